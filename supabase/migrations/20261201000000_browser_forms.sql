-- Forms posted from a browser (the hosted page, or a business's own page with the widget): the
-- bot check happens in the function, before this; here, the per-source limit. A browser's form
-- carries the keyed hash of the address it came from (hex HMAC-SHA256 with the form's secret:
-- the address itself is never stored), and at most p_source_limit forms from one source are
-- recorded in an hour. Past it, nothing is recorded and the caller is told when to retry. The
-- count and the insert happen under a transaction-scoped advisory lock on the hash, so
-- concurrent forms from one source never exceed the limit. Servers' forms (bearer token or
-- signature) pass no hash and are never limited.

-- The source of a browser's form ------------------------------------------------------------------
alter table public.form_submissions add column source_hash text
  constraint form_submissions_source_hash_is_hex check (source_hash ~ '^[0-9a-f]{64}$');
create index form_submissions_by_source on public.form_submissions (source_hash, created_at)
  where source_hash is not null;
comment on column public.form_submissions.source_hash is
  'A browser''s form: hex HMAC-SHA256 of the address it was posted from, keyed with the form''s secret '
  '(the per-source limit counts these). Null for a server''s form.';

-- record_form_submission, with the per-source limit -----------------------------------------------
-- Two new parameters: the argument list changes, so the old function goes (an overload would
-- make PostgREST's choice ambiguous).
drop function public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer);

-- record_form_submission: as in 20261129000000_outreach_rules, and, for a browser's form
-- (p_source_hash and p_source_limit both set), first the per-source limit: under an advisory lock
-- on the hash, if p_source_limit or more forms with that hash were created in the last hour and
-- this idempotency key is new, returns {status: limited, retry_after_seconds} and records
-- nothing. Else returns {submission_id, is_new, status, outcome_reason}, the form recorded with
-- its hash. A server's form passes neither (null): never limited.
create function public.record_form_submission(
  p_idempotency_key text,
  p_customer_key text,
  p_phone_e164 text,
  p_name text,
  p_consent boolean,
  p_fields jsonb default '{}'::jsonb,
  p_cooldown_seconds integer default 86400,
  p_daily_limit integer default 500,
  p_source_hash text default null,
  p_source_limit integer default null
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
  v_recent integer;
  v_retry_after integer;
begin
  if p_cooldown_seconds is null or p_cooldown_seconds < 0 then
    raise exception 'p_cooldown_seconds must be 0 or more, got %', p_cooldown_seconds using errcode = '22023';
  end if;
  if p_daily_limit is null or p_daily_limit < 0 then
    raise exception 'p_daily_limit must be 0 or more, got %', p_daily_limit using errcode = '22023';
  end if;
  v_cooldown := make_interval(secs => p_cooldown_seconds);
  if (p_source_hash is null) <> (p_source_limit is null) then
    raise exception 'p_source_hash and p_source_limit go together (a browser''s form) or not at all (a server''s)'
      using errcode = '22023';
  end if;
  if p_source_hash is not null and p_source_hash !~ '^[0-9a-f]{64}$' then
    raise exception 'p_source_hash must be 64 lower-case hex digits' using errcode = '22023';
  end if;
  if p_source_limit < 0 then
    raise exception 'p_source_limit must be 0 or more, got %', p_source_limit using errcode = '22023';
  end if;

  if p_source_hash is not null then
    -- Every browser form from this source waits here until the one before it has counted
    -- (taken before the session's row lock, by every caller that takes both: no deadlock).
    perform pg_advisory_xact_lock(hashtextextended('form_submissions.source_hash:' || p_source_hash, 0));
    -- A repeat of a form already recorded (a double click) is answered as before, not limited.
    if not exists (select 1 from public.form_submissions where idempotency_key = p_idempotency_key) then
      select count(*)::int into v_recent from public.form_submissions
      where source_hash = p_source_hash and created_at > now() - interval '1 hour';
      if v_recent >= p_source_limit then
        -- Until the p_source_limit-th newest leaves the hour, when one more fits.
        select ceil(extract(epoch from (f.created_at + interval '1 hour' - now())))::int into v_retry_after
        from public.form_submissions f
        where f.source_hash = p_source_hash and f.created_at > now() - interval '1 hour'
        order by f.created_at desc
        offset greatest(p_source_limit - 1, 0) limit 1;
        return jsonb_build_object('status', 'limited',
          'retry_after_seconds', greatest(coalesce(v_retry_after, 3600), 1));
      end if;
    end if;
  end if;

  insert into public.chat_sessions (customer_key, phone_e164, name)
  values (p_customer_key, p_phone_e164, p_name)
  on conflict (customer_key) do nothing;
  -- Every form for this customer waits here until the one before it has decided.
  select * into strict v_session from public.chat_sessions where customer_key = p_customer_key for update;

  insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, fields, source_hash)
  values (p_idempotency_key, p_customer_key, p_phone_e164, p_name, p_consent, coalesce(p_fields, '{}'::jsonb),
          p_source_hash)
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

-- Backend-only: the API roles may not call it; service_role may.
revoke execute on function
  public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer)
  from public, anon, authenticated;
grant execute on function
  public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer)
  to service_role;

comment on function public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer) is
  'Store a form submission once per idempotency key, and decide atomically whether it may reach the customer; '
  'a browser''s form first within its source''s hourly limit.';

notify pgrst, 'reload schema';
