-- Who a web form may reach, decided in the one transaction that records the form:
-- * consent is final: a customer who opted out, or whom a person has taken over (paused_until in
--   the future), gets no template and no chat (skipped: opted_out, skipped: paused);
-- * a live conversation is not restarted: a customer who wrote to us, or whom the bridge wrote
--   to or accepted a form for, within the cooldown gets no second template and keeps their chat
--   (skipped: conversation_live); after the cooldown a form starts a new chat;
-- * at most p_daily_limit outreaches a day (UTC) for the whole bridge: past it, forms are held
--   (held: daily_limit) and the operator is told.
-- The customer's session row is locked first and the day's counter second, by every caller, so
-- concurrent forms for one customer start one outreach, and concurrent forms for many customers
-- never exceed the limit. The form answers every outcome alike; the outcome is kept here.

-- Each day's accepted outreaches -------------------------------------------------------------------
create table public.outreach_days (
  day        date primary key,
  contacted  integer not null default 0 check (contacted >= 0),
  updated_at timestamptz not null default now()
);
comment on table public.outreach_days is
  'How many form outreaches the bridge accepted each day (UTC): the daily limit counts here.';
comment on column public.outreach_days.day is 'The day (UTC).';
comment on column public.outreach_days.contacted is
  'Form submissions accepted for outreach that day (queued to be contacted); held ones are not counted.';
comment on column public.outreach_days.updated_at is 'When the count last changed.';

alter table public.outreach_days enable row level security;
revoke all on table public.outreach_days from public, anon, authenticated;
grant select, insert, update, delete on table public.outreach_days to service_role;

-- A submission's outcome -----------------------------------------------------------------------------
alter table public.form_submissions drop constraint form_submissions_status_check;
alter table public.form_submissions add constraint form_submissions_status_check
  check (status in ('queued', 'started', 'failed', 'skipped', 'held'));
alter table public.form_submissions add column outcome_reason text;
alter table public.form_submissions add constraint form_submissions_outcome_reason_matches_status check (
  case status
    when 'skipped' then coalesce(outcome_reason in ('opted_out', 'paused', 'conversation_live'), false)
    when 'held' then coalesce(outcome_reason = 'daily_limit', false)
    else outcome_reason is null
  end);

comment on column public.form_submissions.status is
  'queued → started (chat created, template sent), or failed (see failure_reason); skipped or held '
  '(see outcome_reason) when the customer was not contacted. The form answers all of them alike.';
comment on column public.form_submissions.outcome_reason is
  'Why the customer was not contacted: opted_out, paused (a person has taken over) or conversation_live '
  '(they wrote, or were written to, within the cooldown) when skipped; daily_limit when held.';

-- record_form_submission, with the outreach rules --------------------------------------------------
-- Two new parameters: the argument list changes, so the old function goes (an overload would
-- make PostgREST's choice ambiguous).
drop function public.record_form_submission(text, text, text, text, boolean, jsonb);

-- record_form_submission: store a form submission once per idempotency key and decide, under the
-- customer's row lock, whether it may reach them: accepted (status queued), skipped (opted_out,
-- paused, conversation_live) or held (daily_limit). Only an accepted one counts towards the day's
-- limit and sets the session's name and phone; a skipped conversation_live one only fills in a
-- missing name or phone. p_cooldown_seconds: how long after the customer's or the bridge's last
-- message, or an accepted submission, a new one is skipped (0: never). p_daily_limit: accepted
-- outreaches per day (UTC) for the whole bridge (0: hold every one).
-- Returns {submission_id, is_new, status, outcome_reason}. The same key with another customer is
-- a conflict.
create function public.record_form_submission(
  p_idempotency_key text,
  p_customer_key text,
  p_phone_e164 text,
  p_name text,
  p_consent boolean,
  p_fields jsonb default '{}'::jsonb,
  p_cooldown_seconds integer default 86400,
  p_daily_limit integer default 500
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_session public.chat_sessions;
  v_submission public.form_submissions;
  v_cooldown interval;
  v_day date := (now() at time zone 'UTC')::date;
  v_reason text;
begin
  if p_cooldown_seconds is null or p_cooldown_seconds < 0 then
    raise exception 'p_cooldown_seconds must be 0 or more, got %', p_cooldown_seconds using errcode = '22023';
  end if;
  if p_daily_limit is null or p_daily_limit < 0 then
    raise exception 'p_daily_limit must be 0 or more, got %', p_daily_limit using errcode = '22023';
  end if;
  v_cooldown := make_interval(secs => p_cooldown_seconds);

  insert into public.chat_sessions (customer_key, phone_e164, name)
  values (p_customer_key, p_phone_e164, p_name)
  on conflict (customer_key) do nothing;
  -- Every form for this customer waits here until the one before it has decided.
  select * into strict v_session from public.chat_sessions where customer_key = p_customer_key for update;

  insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, fields)
  values (p_idempotency_key, p_customer_key, p_phone_e164, p_name, p_consent, coalesce(p_fields, '{}'::jsonb))
  on conflict (idempotency_key) do nothing
  returning * into v_submission;

  if not found then
    select * into strict v_submission from public.form_submissions where idempotency_key = p_idempotency_key;
    if v_submission.customer_key <> p_customer_key then
      raise exception 'idempotency key % was already used for another customer', p_idempotency_key
        using errcode = '23505', hint = 'Send a new Idempotency-Key for a new submission.';
    end if;
    return jsonb_build_object('submission_id', v_submission.id, 'is_new', false, 'status', v_submission.status,
      'outcome_reason', v_submission.outcome_reason);
  end if;

  v_reason := case
    when v_session.opted_out_at is not null then 'opted_out'
    when v_session.paused_until > now() then 'paused'
    when v_session.last_inbound_at > now() - v_cooldown
      or v_session.last_outbound_at > now() - v_cooldown
      or exists (
        select 1 from public.form_submissions f
        where f.customer_key = p_customer_key and f.id <> v_submission.id
          and f.status in ('queued', 'started') and f.created_at > now() - v_cooldown)
      then 'conversation_live'
  end;

  if v_reason is null then
    -- The day's counter, locked until this transaction ends: concurrent forms count one by one.
    insert into public.outreach_days (day) values (v_day) on conflict (day) do nothing;
    update public.outreach_days set contacted = contacted + 1, updated_at = now()
    where day = v_day and contacted < p_daily_limit;
    if not found then
      v_reason := 'daily_limit';
    end if;
  end if;

  if v_reason is null then
    update public.chat_sessions
    set phone_e164 = p_phone_e164, name = p_name, last_activity_at = now(), updated_at = now()
    where customer_key = p_customer_key;
  else
    update public.form_submissions
    set status = case when v_reason = 'daily_limit' then 'held' else 'skipped' end,
        outcome_reason = v_reason, updated_at = now()
    where id = v_submission.id
    returning * into v_submission;
    if v_reason = 'conversation_live' then
      update public.chat_sessions
      set name = coalesce(name, p_name), phone_e164 = coalesce(phone_e164, p_phone_e164), updated_at = now()
      where customer_key = p_customer_key and (name is null or phone_e164 is null);
    end if;
  end if;

  return jsonb_build_object('submission_id', v_submission.id, 'is_new', true, 'status', v_submission.status,
    'outcome_reason', v_submission.outcome_reason);
end;
$$;

-- skip_form_submission: the outreach job found the customer opted out or taken over by a person
-- after the form was accepted: it is recorded as skipped with the reason, and nobody is contacted.
-- Only a queued or failed submission is skipped; returns whether this one was.
create function public.skip_form_submission(p_submission_id uuid, p_reason text)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if p_reason is null or p_reason not in ('opted_out', 'paused', 'conversation_live') then
    raise exception 'p_reason must be opted_out, paused or conversation_live, got %', p_reason
      using errcode = '22023';
  end if;
  update public.form_submissions
  set status = 'skipped', outcome_reason = p_reason, failure_reason = null, updated_at = now()
  where id = p_submission_id and status in ('queued', 'failed');
  return found;
end;
$$;

-- fail_form_submission: the outreach could not be done; the reason is kept for the dashboard.
-- A skipped or held submission stays what it is (nobody was to be contacted).
create or replace function public.fail_form_submission(p_submission_id uuid, p_reason text)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if p_reason is null or length(trim(p_reason)) = 0 then
    raise exception 'p_reason is required' using errcode = '22023';
  end if;
  update public.form_submissions set status = 'failed', failure_reason = left(p_reason, 2000), updated_at = now()
  where id = p_submission_id and status in ('queued', 'failed');
  return found;
end;
$$;

-- Backend-only: the API roles may not call these; service_role may.
revoke execute on function
  public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer),
  public.skip_form_submission(uuid, text),
  public.fail_form_submission(uuid, text)
  from public, anon, authenticated;
grant execute on function
  public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer),
  public.skip_form_submission(uuid, text),
  public.fail_form_submission(uuid, text)
  to service_role;

comment on function public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer) is
  'Store a form submission once per idempotency key, and decide atomically whether it may reach the customer.';
comment on function public.skip_form_submission(uuid, text) is
  'Record that a form''s outreach was not made: the customer opted out or was taken over since.';
comment on function public.fail_form_submission(uuid, text) is 'Mark a form''s outreach failed, with the reason.';

notify pgrst, 'reload schema';
