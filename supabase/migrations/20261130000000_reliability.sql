-- Work that cannot be stranded, and dead letters that answer:
-- * a turn that crashes on its messages again and again gives them up (claim_turn), but messages a
--   turn put back on purpose (fail_turn with retry) wait whatever their attempts: the queue's
--   receive count bounds the job, and a job redriven from the dead-letter queue answers them;
-- * fail_turn can give the claim's attempt back (a turn put back for lack of time, or because the
--   whole account failed, is not the message's fault), and says when the sweeper may look again;
-- * a queued form submission whose start must wait is deferred (defer_form_submission);
-- * one function, run every minute, finds what nothing will take (waiting messages with no live
--   turn, submissions queued and not started), gives up what waited too long, and hands the rest
--   to the caller to queue, each customer and submission once (sweep_stranded_work);
-- * the operator puts failed messages and submissions back (retry_failed), and the sweeper queues
--   them within a minute.
-- Every step locks a customer's session before their messages, and a submission before its
-- session; the sweeper never waits for a row another step holds (skip locked).

-- When the sweeper may look at a customer or a submission again ------------------------------------
alter table public.chat_sessions add column sweep_after timestamptz;
comment on column public.chat_sessions.sweep_after is
  'The sweeper re-queues this customer''s waiting messages after this time if no turn took them first.';

alter table public.form_submissions add column sweep_after timestamptz;
comment on column public.form_submissions.sweep_after is
  'The sweeper re-queues this queued submission after this time if its outreach has not started by then.';

-- When the operator last put a failed message or submission back: the give-up clock starts again.
alter table public.whatsapp_messages add column retried_at timestamptz;
comment on column public.whatsapp_messages.retried_at is
  'When retry_failed last put this failed message back: the sweeper gives a message up that long after '
  'it was recorded or retried.';

alter table public.form_submissions add column retried_at timestamptz;
comment on column public.form_submissions.retried_at is
  'When retry_failed last put this failed submission back: the sweeper gives a submission up that long '
  'after it was received or retried.';

comment on column public.whatsapp_messages.attempts is
  'How many turns have claimed this message; a turn put back through no fault of the message gives its '
  'attempt back, and retry_failed starts again from 0.';
comment on column public.form_submissions.failure_reason is
  'Why the outreach failed, or why it is waiting (deferred); kept when it is retried.';

-- The sweeper's queued submissions, oldest first.
create index form_submissions_queued on public.form_submissions (created_at, id) where status = 'queued';

-- claim_turn: take all of a customer's waiting inbound messages, in order, for one turn.
-- The session row is locked while claiming, and a turn holds a lease: while it is unexpired no
-- other turn starts for the customer ('busy'); once expired, its messages are claimed again.
-- A turn whose agent answer was saved (save_turn_replies) is resumed instead, with its own
-- messages and the replies still to send ('resume'), so the agent is not asked twice.
-- A message left in progress by a turn that never finished (its lease ran out), claimed
-- p_max_attempts times already, is marked failed: the turn keeps dying on it. Pending messages
-- are never given up here, whatever their attempts: the turn that put them back said so.
-- Returns {status: 'claimed'|'busy'|'idle', turn_id?, lease_expires_at?, session?,
-- messages: [...], resume?: {chat_id, replies, replies_sent}}.
create or replace function public.claim_turn(
  p_customer_key text,
  p_lease_seconds integer default 300,
  p_max_attempts integer default 5
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_session public.chat_sessions;
  v_turn_id uuid := gen_random_uuid();
  v_lease_expires_at timestamptz;
  v_messages jsonb;
begin
  if p_lease_seconds is null or p_lease_seconds < 1 or p_lease_seconds > 43200 then
    raise exception 'p_lease_seconds must be between 1 and 43200, got %', p_lease_seconds using errcode = '22023';
  end if;
  if p_max_attempts is null or p_max_attempts < 1 then
    raise exception 'p_max_attempts must be at least 1, got %', p_max_attempts using errcode = '22023';
  end if;

  select * into v_session from public.chat_sessions where customer_key = p_customer_key for update;
  if not found then
    return jsonb_build_object('status', 'idle', 'messages', '[]'::jsonb);
  end if;
  if v_session.turn_id is not null and v_session.turn_lease_expires_at > now() then
    return jsonb_build_object('status', 'busy', 'turn_id', v_session.turn_id,
      'lease_expires_at', v_session.turn_lease_expires_at, 'messages', '[]'::jsonb);
  end if;

  -- No turn is live: a message still in_progress belongs to a turn whose worker died (its lease
  -- ran out) or that no longer holds the customer. Claimed too often, it is given up.
  update public.whatsapp_messages set
    state = 'failed',
    failure_reason = left(coalesce(failure_reason || '; ', '')
      || format('gave up after %s attempts: the turn never finished', attempts), 2000),
    turn_id = null,
    updated_at = now()
  where customer_key = p_customer_key and state = 'in_progress' and attempts >= p_max_attempts;

  v_lease_expires_at := now() + make_interval(secs => p_lease_seconds);
  if v_session.turn_replies is not null then
    -- The earlier turn's agent answered: resume it with the same turn id and its own messages
    -- (in progress when its worker died, pending when fail_turn put them back).
    v_turn_id := v_session.turn_id;
  end if;
  with claimed as (
    update public.whatsapp_messages set
      state = 'in_progress', turn_id = v_turn_id, attempts = attempts + 1, updated_at = now()
    where customer_key = p_customer_key
      and state in ('pending', 'in_progress')
      and (v_session.turn_replies is null or turn_id = v_turn_id)
    returning id, wamid, message_type, body, payload, sent_at, attempts, failure_reason
  )
  select jsonb_agg(jsonb_build_object(
           'wamid', c.wamid, 'message_type', c.message_type, 'body', c.body, 'payload', c.payload,
           'sent_at', c.sent_at, 'attempts', c.attempts,
           'failed_before', c.failure_reason is not null)
         order by c.sent_at, c.id)
  into v_messages
  from claimed c;

  if v_messages is null then
    update public.chat_sessions set turn_id = null, turn_lease_expires_at = null,
      turn_chat_id = null, turn_replies = null, turn_replies_sent = 0, sweep_after = null
    where customer_key = p_customer_key and (turn_id is not null or sweep_after is not null);
    if v_session.turn_replies is not null then
      -- The resumed turn's messages were all given up: look again for waiting ones.
      return public.claim_turn(p_customer_key, p_lease_seconds, p_max_attempts);
    end if;
    return jsonb_build_object('status', 'idle', 'messages', '[]'::jsonb);
  end if;

  update public.chat_sessions set
    turn_id = v_turn_id, turn_lease_expires_at = v_lease_expires_at, sweep_after = null, updated_at = now()
  where customer_key = p_customer_key
  returning * into v_session;

  return jsonb_build_object('status', 'claimed', 'turn_id', v_turn_id,
    'lease_expires_at', v_lease_expires_at, 'session', to_jsonb(v_session), 'messages', v_messages)
    || case when v_session.turn_replies is null then '{}'::jsonb
            else jsonb_build_object('resume', jsonb_build_object('chat_id', v_session.turn_chat_id,
                   'replies', v_session.turn_replies, 'replies_sent', v_session.turn_replies_sent)) end;
end;
$$;

-- fail_turn, with when to look again and whether the attempt counts ----------------------------------
-- The argument list changes, so the three-argument function goes: two overloads would leave
-- PostgREST unable to choose between them for a call that names only the first three.
drop function public.fail_turn(uuid, text, boolean);

-- fail_turn: give up a turn, keeping the reason. p_retry = true puts its messages back to wait for
-- the next turn (pending), or, when the agent's answer was saved, keeps them with the turn and ends
-- its lease, so that the next claim resumes it and sends what is left; false marks them failed.
-- A retry expects the next try in p_retry_in_seconds: if no turn has taken the messages a minute
-- after that, the sweeper queues the customer again. p_count_attempt = false gives the claim's
-- attempt back (the turn was put back for lack of time, or the whole account failed: not the
-- messages' fault). Returns {released, failed}. A repeated call touches nothing.
create function public.fail_turn(
  p_turn_id uuid,
  p_reason text,
  p_retry boolean,
  p_retry_in_seconds integer default 0,
  p_count_attempt boolean default true
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_count integer;
  v_customer_key text;
  v_resume boolean := false;
begin
  if p_reason is null or length(trim(p_reason)) = 0 then
    raise exception 'p_reason is required' using errcode = '22023';
  end if;
  if p_retry is null then
    raise exception 'p_retry is required' using errcode = '22023';
  end if;
  if p_retry_in_seconds is null or p_retry_in_seconds < 0 or p_retry_in_seconds > 43200 then
    raise exception 'p_retry_in_seconds must be between 0 and 43200, got %', p_retry_in_seconds
      using errcode = '22023';
  end if;
  if p_count_attempt is null then
    raise exception 'p_count_attempt is required' using errcode = '22023';
  end if;

  -- The customer's session first, as every step locks it before their messages.
  select customer_key, turn_replies is not null into v_customer_key, v_resume
  from public.chat_sessions where turn_id = p_turn_id for update;
  if not found then
    v_resume := false;
    select customer_key into v_customer_key
    from public.whatsapp_messages where turn_id = p_turn_id and state = 'in_progress' limit 1;
    if found then
      perform 1 from public.chat_sessions where customer_key = v_customer_key for update;
    end if;
  end if;

  update public.whatsapp_messages set
    state = case when p_retry then 'pending' else 'failed' end,
    failure_reason = left(p_reason, 2000),
    -- A saved answer is resumed with its own messages: they stay with their turn.
    turn_id = case when p_retry and not v_resume then null else turn_id end,
    attempts = case when p_count_attempt then attempts else greatest(attempts - 1, 0) end,
    updated_at = now()
  where turn_id = p_turn_id and state = 'in_progress';
  get diagnostics v_count = row_count;

  if p_retry and v_resume then
    update public.chat_sessions set
      turn_lease_expires_at = now(),
      sweep_after = now() + make_interval(secs => p_retry_in_seconds) + interval '1 minute',
      updated_at = now()
    where turn_id = p_turn_id;
  else
    update public.chat_sessions set turn_id = null, turn_lease_expires_at = null,
      turn_chat_id = null, turn_replies = null, turn_replies_sent = 0,
      sweep_after = case when p_retry
                         then now() + make_interval(secs => p_retry_in_seconds) + interval '1 minute'
                         else sweep_after end,
      updated_at = now()
    where turn_id = p_turn_id;
  end if;

  return jsonb_build_object(
    'released', case when p_retry then v_count else 0 end,
    'failed', case when p_retry then 0 else v_count end);
end;
$$;

-- defer_form_submission: a queued submission's outreach could not start now and is retried in
-- p_retry_in_seconds (its job is retried by the queue; the sweeper queues it again a minute after
-- that if it has not started). It stays queued, with the reason in failure_reason.
-- False when the submission is not queued.
create function public.defer_form_submission(p_id uuid, p_reason text, p_retry_in_seconds integer)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if p_reason is null or length(trim(p_reason)) = 0 then
    raise exception 'p_reason is required' using errcode = '22023';
  end if;
  if p_retry_in_seconds is null or p_retry_in_seconds < 0 or p_retry_in_seconds > 43200 then
    raise exception 'p_retry_in_seconds must be between 0 and 43200, got %', p_retry_in_seconds
      using errcode = '22023';
  end if;
  update public.form_submissions set
    failure_reason = left(p_reason, 2000),
    sweep_after = now() + make_interval(secs => p_retry_in_seconds) + interval '1 minute',
    updated_at = now()
  where id = p_id and status = 'queued';
  return found;
end;
$$;

-- sweep_stranded_work: what nothing will take, for the caller to queue; run every minute.
-- First gives up what waited too long: inbound messages waiting p_give_up_hours after they were
-- recorded (or retried) are failed, and submissions queued that long are failed. Then picks, oldest
-- first and at most p_limit of each:
-- * turns: customers with waiting messages (pending, or in progress under a turn that is not live)
--   and no live turn, once their sweep_after has passed, or, without one, p_grace_seconds after
--   their waiting messages last changed and their last turn's lease ran out;
-- * submissions: queued ones, once their sweep_after has passed, or p_grace_seconds after they
--   last changed.
-- Each one picked gets sweep_after = now() + p_grace_seconds, so a second sweep within the grace
-- picks nothing twice; rows another transaction holds (a turn being claimed, another sweeper)
-- are skipped, so two sweepers at once never pick the same one.
-- Returns {turns: [customer_key, ...], submissions: [{submission_id, customer_key}, ...],
-- gave_up: {messages, submissions}}.
create function public.sweep_stranded_work(
  p_grace_seconds integer default 60,
  p_give_up_hours integer default 24,
  p_limit integer default 500
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_grace interval;
  v_give_up_before timestamptz;
  v_gave_up_messages integer;
  v_gave_up_submissions integer;
  v_turns jsonb;
  v_submissions jsonb;
begin
  if p_grace_seconds is null or p_grace_seconds < 1 or p_grace_seconds > 43200 then
    raise exception 'p_grace_seconds must be between 1 and 43200, got %', p_grace_seconds using errcode = '22023';
  end if;
  if p_give_up_hours is null or p_give_up_hours < 1 or p_give_up_hours > 8760 then
    raise exception 'p_give_up_hours must be between 1 and 8760, got %', p_give_up_hours using errcode = '22023';
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 10000 then
    raise exception 'p_limit must be between 1 and 10000, got %', p_limit using errcode = '22023';
  end if;
  v_grace := make_interval(secs => p_grace_seconds);
  v_give_up_before := now() - make_interval(hours => p_give_up_hours);

  -- Messages that waited too long, of customers no live turn holds.
  with stale as (
    select s.customer_key
    from public.chat_sessions s
    where s.customer_key in (
        select m.customer_key from public.whatsapp_messages m
        where m.state in ('pending', 'in_progress') and coalesce(m.retried_at, m.created_at) < v_give_up_before)
      and (s.turn_id is null or s.turn_lease_expires_at <= now())
    order by s.customer_key
    for update of s skip locked
  ),
  gave_up as (
    update public.whatsapp_messages m set
      state = 'failed',
      failure_reason = left(coalesce(m.failure_reason || '; ', '')
        || format('gave up: unanswered after %s hours', p_give_up_hours), 2000),
      turn_id = null,
      updated_at = now()
    from stale
    where m.customer_key = stale.customer_key
      and m.state in ('pending', 'in_progress') and coalesce(m.retried_at, m.created_at) < v_give_up_before
    returning 1
  )
  select count(*) into v_gave_up_messages from gave_up;

  -- Submissions queued too long.
  with stale as (
    select f.id from public.form_submissions f
    where f.status = 'queued' and coalesce(f.retried_at, f.created_at) < v_give_up_before
    order by f.created_at, f.id
    for update skip locked
  ),
  gave_up as (
    update public.form_submissions f set
      status = 'failed',
      failure_reason = left(coalesce(f.failure_reason || '; ', '')
        || format('not started within %s hours', p_give_up_hours), 2000),
      updated_at = now()
    from stale
    where f.id = stale.id
    returning 1
  )
  select count(*) into v_gave_up_submissions from gave_up;

  -- Customers whose waiting messages no turn will take.
  with waiting as (
    select m.customer_key, min(m.sent_at) as oldest, max(m.updated_at) as last_change
    from public.whatsapp_messages m
    where m.state in ('pending', 'in_progress')
    group by m.customer_key
  ),
  picked as (
    select s.customer_key, w.oldest
    from public.chat_sessions s
    join waiting w on w.customer_key = s.customer_key
    where (s.turn_id is null or s.turn_lease_expires_at <= now())
      and coalesce(s.sweep_after, greatest(w.last_change, s.turn_lease_expires_at) + v_grace) <= now()
    order by w.oldest, s.customer_key
    limit p_limit
    for update of s skip locked
  ),
  queued as (
    update public.chat_sessions s set sweep_after = now() + v_grace
    from picked p
    where s.customer_key = p.customer_key
    returning s.customer_key, p.oldest
  )
  select coalesce(jsonb_agg(q.customer_key order by q.oldest, q.customer_key), '[]'::jsonb)
  into v_turns
  from queued q;

  -- Submissions queued and not started.
  with picked as (
    select f.id, f.created_at
    from public.form_submissions f
    where f.status = 'queued' and coalesce(f.sweep_after, f.updated_at + v_grace) <= now()
    order by f.created_at, f.id
    limit p_limit
    for update skip locked
  ),
  queued as (
    update public.form_submissions f set sweep_after = now() + v_grace
    from picked p
    where f.id = p.id
    returning f.id, f.customer_key, p.created_at
  )
  select coalesce(jsonb_agg(jsonb_build_object('submission_id', q.id, 'customer_key', q.customer_key)
                            order by q.created_at, q.id), '[]'::jsonb)
  into v_submissions
  from queued q;

  return jsonb_build_object('turns', v_turns, 'submissions', v_submissions,
    'gave_up', jsonb_build_object('messages', v_gave_up_messages, 'submissions', v_gave_up_submissions));
end;
$$;

-- retry_failed: for the operator (the Supabase SQL editor, or an RPC call with the service key),
-- once the cause is fixed: failed inbound messages go back to pending with no attempts and no turn,
-- and failed form submissions back to queued; the reason they failed is kept as history. The
-- sweeper queues them within a minute. p_customer_key: only this customer's; p_since: only
-- messages sent (submissions received) since then. Returns {messages, submissions}: how many.
create function public.retry_failed(
  p_customer_key text default null,
  p_since timestamptz default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_messages integer;
  v_submissions integer;
begin
  -- Submissions, then sessions, then messages: the order the other steps lock them in.
  with retried as (
    update public.form_submissions set
      status = 'queued', sweep_after = now(), retried_at = now(), updated_at = now()
    where status = 'failed'
      and (p_customer_key is null or customer_key = p_customer_key)
      and (p_since is null or created_at >= p_since)
    returning 1
  )
  select count(*) into v_submissions from retried;

  perform 1 from public.chat_sessions s
  where s.customer_key in (
      select m.customer_key from public.whatsapp_messages m
      where m.state = 'failed'
        and (p_customer_key is null or m.customer_key = p_customer_key)
        and (p_since is null or m.sent_at >= p_since))
  order by s.customer_key
  for update of s;

  with retried as (
    update public.whatsapp_messages set
      state = 'pending', attempts = 0, turn_id = null, retried_at = now(), updated_at = now()
    where state = 'failed'
      and (p_customer_key is null or customer_key = p_customer_key)
      and (p_since is null or sent_at >= p_since)
    returning customer_key
  ),
  sessions as (
    update public.chat_sessions set sweep_after = now(), updated_at = now()
    where customer_key in (select customer_key from retried)
    returning 1
  )
  select count(*) into v_messages from retried;

  return jsonb_build_object('messages', v_messages, 'submissions', v_submissions);
end;
$$;

-- Backend-only, as every other step: the API roles may not call these; service_role may.
revoke execute on function
  public.claim_turn(text, integer, integer),
  public.fail_turn(uuid, text, boolean, integer, boolean),
  public.defer_form_submission(uuid, text, integer),
  public.sweep_stranded_work(integer, integer, integer),
  public.retry_failed(text, timestamptz)
  from public, anon, authenticated;
grant execute on function
  public.claim_turn(text, integer, integer),
  public.fail_turn(uuid, text, boolean, integer, boolean),
  public.defer_form_submission(uuid, text, integer),
  public.sweep_stranded_work(integer, integer, integer),
  public.retry_failed(text, timestamptz)
  to service_role;

comment on function public.claim_turn(text, integer, integer) is
  'Claim all waiting messages of a customer for one turn, under a lease; give up messages a turn keeps dying on.';
comment on function public.fail_turn(uuid, text, boolean, integer, boolean) is
  'Give up a turn: release its messages for a retry (when the sweeper may look again, whether the attempt counts) or mark them failed.';
comment on function public.defer_form_submission(uuid, text, integer) is
  'Keep a queued form submission queued for a later try, with the reason.';
comment on function public.sweep_stranded_work(integer, integer, integer) is
  'Find the waiting messages and queued submissions nothing will take, once each, and give up what waited too long.';
comment on function public.retry_failed(text, timestamptz) is
  'For the operator: put failed messages and form submissions back, for the sweeper to queue.';

notify pgrst, 'reload schema';
