-- One function per atomic step of the conversation engine. PostgREST runs each RPC call in one
-- transaction, so each step is all-or-nothing and one round trip. Functions run as the caller
-- (security invoker, i.e. service_role) with an empty search_path and qualified names.

-- record_inbound_messages: store a batch of inbound WhatsApp messages, once per wamid.
-- p_messages: [{wamid, customer_key, message_type, sent_at, body?, payload?, wa_id?,
--               whatsapp_user_id?, profile_name?}]
-- Returns [{wamid, customer_key, is_new}] in input order; is_new is false for a repeated delivery.
create function public.record_inbound_messages(p_messages jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  if jsonb_typeof(p_messages) is distinct from 'array' then
    raise exception 'p_messages must be a JSON array of messages' using errcode = '22023';
  end if;

  -- One statement: the messages' foreign keys are checked at its end, after both inserts (a
  -- data-modifying CTE always runs to completion even though nothing reads its output).
  -- Only a batch at least as new as what the session has seen updates it, so a repeated or
  -- late delivery never puts back an older WhatsApp id or profile name.
  with incoming as (
    select e.ord, m.*, row_number() over (partition by m.wamid order by e.ord) = 1 as first_of_wamid
    from jsonb_array_elements(p_messages) with ordinality as e(message, ord)
    cross join lateral jsonb_to_record(e.message) as m(
      wamid text, customer_key text, message_type text, sent_at timestamptz, body text,
      payload jsonb, wa_id text, whatsapp_user_id text, profile_name text)
  ),
  latest_per_customer as (
    -- the newest value of each field the batch carries (a message may omit some)
    select customer_key,
      (array_agg(wa_id order by sent_at desc) filter (where wa_id is not null))[1] as wa_id,
      (array_agg(whatsapp_user_id order by sent_at desc) filter (where whatsapp_user_id is not null))[1]
        as whatsapp_user_id,
      (array_agg(profile_name order by sent_at desc) filter (where profile_name is not null))[1] as profile_name,
      max(sent_at) as sent_at
    from incoming
    group by customer_key
  ),
  sessions as (
    insert into public.chat_sessions as s
      (customer_key, wa_id, whatsapp_user_id, whatsapp_profile_name, last_inbound_at)
    select l.customer_key, l.wa_id, l.whatsapp_user_id, l.profile_name, l.sent_at
    from latest_per_customer l
    order by l.customer_key  -- a fixed lock order, so concurrent batches cannot deadlock
    on conflict (customer_key) do update set
      wa_id = coalesce(excluded.wa_id, s.wa_id),
      whatsapp_user_id = coalesce(excluded.whatsapp_user_id, s.whatsapp_user_id),
      whatsapp_profile_name = coalesce(excluded.whatsapp_profile_name, s.whatsapp_profile_name),
      last_inbound_at = excluded.last_inbound_at,
      last_activity_at = now(),
      updated_at = now()
    where s.last_inbound_at is null or excluded.last_inbound_at > s.last_inbound_at
    returning 1
  ),
  inserted as (
    insert into public.whatsapp_messages
      (wamid, customer_key, direction, message_type, body, payload, sent_at, state)
    select i.wamid, i.customer_key, 'inbound', i.message_type, i.body, i.payload, i.sent_at, 'pending'
    from incoming i
    where i.first_of_wamid
    order by i.wamid
    on conflict (wamid) do nothing
    returning wamid
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'wamid', i.wamid,
           'customer_key', i.customer_key,
           'is_new', i.first_of_wamid and exists (select 1 from inserted n where n.wamid = i.wamid))
         order by i.ord), '[]'::jsonb)
  into v_result
  from incoming i;

  return v_result;
end;
$$;

-- record_form_submission: store an accepted form submission once per idempotency key, and make
-- sure the customer's session carries the form's name and phone.
-- Returns {submission_id, is_new, status}. The same key with another customer is a conflict.
create function public.record_form_submission(
  p_idempotency_key text,
  p_customer_key text,
  p_phone_e164 text,
  p_name text,
  p_consent boolean,
  p_fields jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_submission public.form_submissions;
begin
  insert into public.chat_sessions (customer_key, phone_e164, name)
  values (p_customer_key, p_phone_e164, p_name)
  on conflict (customer_key) do nothing;

  insert into public.form_submissions (idempotency_key, customer_key, phone_e164, name, consent, fields)
  values (p_idempotency_key, p_customer_key, p_phone_e164, p_name, p_consent, coalesce(p_fields, '{}'::jsonb))
  on conflict (idempotency_key) do nothing
  returning * into v_submission;

  if found then
    update public.chat_sessions
    set phone_e164 = p_phone_e164, name = p_name, last_activity_at = now(), updated_at = now()
    where customer_key = p_customer_key;
    return jsonb_build_object('submission_id', v_submission.id, 'is_new', true, 'status', v_submission.status);
  end if;

  select * into strict v_submission from public.form_submissions where idempotency_key = p_idempotency_key;
  if v_submission.customer_key <> p_customer_key then
    raise exception 'idempotency key % was already used for another customer', p_idempotency_key
      using errcode = '23505', hint = 'Send a new Idempotency-Key for a new submission.';
  end if;
  return jsonb_build_object('submission_id', v_submission.id, 'is_new', false, 'status', v_submission.status);
end;
$$;

-- claim_turn: take all of a customer's waiting inbound messages, in order, for one turn.
-- The session row is locked while claiming, and a turn holds a lease: while it is unexpired no
-- other turn starts for the customer ('busy'); once expired, its messages are claimed again.
-- A turn whose agent answer was saved (save_turn_replies) is resumed instead, with its own
-- messages and the replies still to send ('resume'), so the agent is not asked twice.
-- A message claimed p_max_attempts times without being answered is marked failed, not retried
-- forever. Returns {status: 'claimed'|'busy'|'idle', turn_id?, lease_expires_at?, session?,
-- messages: [...], resume?: {chat_id, replies, replies_sent}}.
create function public.claim_turn(
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

  -- Any message still in_progress belongs to a turn whose lease has run out: its worker died.
  -- Messages tried too often are given up, whichever turn held them.
  update public.whatsapp_messages set
    state = 'failed',
    failure_reason = coalesce(failure_reason || '; ', '') || format('gave up after %s attempts', attempts),
    turn_id = null,
    updated_at = now()
  where customer_key = p_customer_key and state in ('pending', 'in_progress') and attempts >= p_max_attempts;

  v_lease_expires_at := now() + make_interval(secs => p_lease_seconds);
  if v_session.turn_replies is not null then
    -- The dead turn's agent answered: resume it with the same turn id and its own messages.
    v_turn_id := v_session.turn_id;
  end if;
  with claimed as (
    update public.whatsapp_messages set
      state = 'in_progress', turn_id = v_turn_id, attempts = attempts + 1, updated_at = now()
    where customer_key = p_customer_key
      and (case when v_session.turn_replies is not null
                then state = 'in_progress' and turn_id = v_turn_id
                else state in ('pending', 'in_progress') end)
    returning id, wamid, message_type, body, payload, sent_at, attempts
  )
  select jsonb_agg(jsonb_build_object(
           'wamid', c.wamid, 'message_type', c.message_type, 'body', c.body, 'payload', c.payload,
           'sent_at', c.sent_at, 'attempts', c.attempts)
         order by c.sent_at, c.id)
  into v_messages
  from claimed c;

  if v_messages is null then
    update public.chat_sessions set turn_id = null, turn_lease_expires_at = null,
      turn_chat_id = null, turn_replies = null, turn_replies_sent = 0
    where customer_key = p_customer_key and turn_id is not null;
    if v_session.turn_replies is not null then
      -- The resumed turn's messages were all given up: look again for waiting ones.
      return public.claim_turn(p_customer_key, p_lease_seconds, p_max_attempts);
    end if;
    return jsonb_build_object('status', 'idle', 'messages', '[]'::jsonb);
  end if;

  update public.chat_sessions set
    turn_id = v_turn_id, turn_lease_expires_at = v_lease_expires_at, updated_at = now()
  where customer_key = p_customer_key
  returning * into v_session;

  return jsonb_build_object('status', 'claimed', 'turn_id', v_turn_id,
    'lease_expires_at', v_lease_expires_at, 'session', to_jsonb(v_session), 'messages', v_messages)
    || case when v_session.turn_replies is null then '{}'::jsonb
            else jsonb_build_object('resume', jsonb_build_object('chat_id', v_session.turn_chat_id,
                   'replies', v_session.turn_replies, 'replies_sent', v_session.turn_replies_sent)) end;
end;
$$;

-- attach_chat: make p_chat_id the customer's current chat, if the current one is still
-- p_expected_chat_id (null: the customer has no chat yet). The replaced chat stays in chat_history.
-- When callers race, exactly one attaches; the others get attached = false and the winner's id.
-- Attaching the chat that is already current answers attached = true (a retry is harmless).
-- Returns {attached, current_chat_id, previous_chat_id}.
create function public.attach_chat(
  p_customer_key text,
  p_chat_id text,
  p_expected_chat_id text default null,
  p_end_reason text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_session public.chat_sessions;
begin
  insert into public.chat_sessions (customer_key) values (p_customer_key)
  on conflict (customer_key) do nothing;
  select * into strict v_session from public.chat_sessions where customer_key = p_customer_key for update;

  if v_session.current_chat_id = p_chat_id then
    return jsonb_build_object('attached', true, 'current_chat_id', p_chat_id, 'previous_chat_id', null);
  end if;
  if v_session.current_chat_id is distinct from p_expected_chat_id then
    return jsonb_build_object('attached', false, 'current_chat_id', v_session.current_chat_id,
      'previous_chat_id', null);
  end if;

  update public.chat_history set ended_at = now(), end_reason = coalesce(p_end_reason, 'replaced')
  where customer_key = p_customer_key and ended_at is null;
  insert into public.chat_history (chat_id, customer_key) values (p_chat_id, p_customer_key);
  update public.chat_sessions set
    current_chat_id = p_chat_id, chat_status = 'ongoing', chat_started_at = now(),
    last_activity_at = now(), updated_at = now()
  where customer_key = p_customer_key;

  return jsonb_build_object('attached', true, 'current_chat_id', p_chat_id,
    'previous_chat_id', v_session.current_chat_id);
end;
$$;

-- complete_turn: record what the turn sent and mark its inbound messages answered.
-- p_outbound: [{wamid, message_type, body?, payload?}], sent in this order.
-- Outbound messages are recorded even when the turn lost its lease (they were sent); inbound
-- messages are marked answered only if this turn still holds them. A repeated call is harmless.
-- Returns {completed, answered, recorded}: completed = false means another turn took over.
create function public.complete_turn(
  p_turn_id uuid,
  p_customer_key text,
  p_chat_id text default null,
  p_outbound jsonb default '[]'::jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_answered integer;
  v_recorded integer;
  v_held boolean;
begin
  if jsonb_typeof(coalesce(p_outbound, '[]'::jsonb)) <> 'array' then
    raise exception 'p_outbound must be a JSON array of messages' using errcode = '22023';
  end if;
  select coalesce(turn_id = p_turn_id, false) into v_held
  from public.chat_sessions where customer_key = p_customer_key for update;
  if not found then
    raise exception 'no session for customer %', p_customer_key using errcode = 'P0002';
  end if;

  with sent as (
    insert into public.whatsapp_messages
      (wamid, customer_key, direction, message_type, body, payload, sent_at, chat_id, turn_id, delivery_status)
    select m.wamid, p_customer_key, 'outbound', m.message_type, m.body, m.payload,
           clock_timestamp(), p_chat_id, p_turn_id, 'accepted'
    from rows from (jsonb_to_recordset(coalesce(p_outbound, '[]'::jsonb))
        as (wamid text, message_type text, body text, payload jsonb))
      with ordinality as m(wamid, message_type, body, payload, ord)
    order by m.ord
    on conflict (wamid) do nothing
    returning 1
  )
  select count(*) into v_recorded from sent;

  update public.whatsapp_messages set
    state = 'answered', chat_id = p_chat_id, failure_reason = null, updated_at = now()
  where turn_id = p_turn_id and customer_key = p_customer_key and state = 'in_progress';
  get diagnostics v_answered = row_count;

  update public.chat_sessions set
    turn_id = case when v_held then null else turn_id end,
    turn_lease_expires_at = case when v_held then null else turn_lease_expires_at end,
    turn_chat_id = case when v_held then null else turn_chat_id end,
    turn_replies = case when v_held then null else turn_replies end,
    turn_replies_sent = case when v_held then 0 else turn_replies_sent end,
    last_outbound_at = case when v_recorded > 0 then now() else last_outbound_at end,
    last_activity_at = now(), updated_at = now()
  where customer_key = p_customer_key;

  return jsonb_build_object(
    -- A repeated call finds its messages already answered by this turn: still completed.
    'completed', v_held or v_answered > 0 or exists (
      select 1 from public.whatsapp_messages
      where turn_id = p_turn_id and state = 'answered' and direction = 'inbound'),
    'answered', v_answered,
    'recorded', v_recorded);
end;
$$;

-- fail_turn: give up a turn, keeping the reason. p_retry = true puts its messages back to wait
-- for the next turn, or, when the agent's answer was saved, ends the lease so that the next claim
-- resumes the turn and sends what is left; false marks them failed. Returns {released, failed}.
create function public.fail_turn(
  p_turn_id uuid,
  p_reason text,
  p_retry boolean
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_count integer;
begin
  if p_reason is null or length(trim(p_reason)) = 0 then
    raise exception 'p_reason is required' using errcode = '22023';
  end if;
  if p_retry is null then
    raise exception 'p_retry is required' using errcode = '22023';
  end if;

  if p_retry and exists (select 1 from public.chat_sessions where turn_id = p_turn_id and turn_replies is not null) then
    update public.whatsapp_messages set failure_reason = left(p_reason, 2000), updated_at = now()
    where turn_id = p_turn_id and state = 'in_progress';
    get diagnostics v_count = row_count;
    update public.chat_sessions set turn_lease_expires_at = now(), updated_at = now() where turn_id = p_turn_id;
    return jsonb_build_object('released', v_count, 'failed', 0);
  end if;

  update public.whatsapp_messages set
    state = case when p_retry then 'pending' else 'failed' end,
    failure_reason = left(p_reason, 2000),
    turn_id = case when p_retry then null else turn_id end,
    updated_at = now()
  where turn_id = p_turn_id and state = 'in_progress';
  get diagnostics v_count = row_count;

  update public.chat_sessions set turn_id = null, turn_lease_expires_at = null,
    turn_chat_id = null, turn_replies = null, turn_replies_sent = 0, updated_at = now()
  where turn_id = p_turn_id;

  return jsonb_build_object(
    'released', case when p_retry then v_count else 0 end,
    'failed', case when p_retry then 0 else v_count end);
end;
$$;

-- record_delivery_statuses: apply WhatsApp status webhooks to outbound messages.
-- p_statuses: [{wamid, status, at, errors?}]. A status only ever moves forward
-- (accepted < sent < delivered < read; failed ranks with read), so late or repeated webhooks
-- change nothing. Returns [{wamid, delivery_status, applied}]; delivery_status is null for a
-- wamid the bridge did not send.
create function public.record_delivery_statuses(p_statuses jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  if jsonb_typeof(p_statuses) is distinct from 'array' then
    raise exception 'p_statuses must be a JSON array of statuses' using errcode = '22023';
  end if;

  with incoming as (
    select s.wamid, s.status, s.at, s.errors,
      case s.status when 'sent' then 1 when 'delivered' then 2 when 'read' then 3 when 'failed' then 3 end as rank
    from jsonb_to_recordset(p_statuses) as s(wamid text, status text, at timestamptz, errors jsonb)
  ),
  bad as (
    select 1 from incoming where rank is null or wamid is null or at is null
  ),
  best as (
    select distinct on (wamid) * from incoming order by wamid, rank desc, at desc
  ),
  applied as (
    update public.whatsapp_messages m set
      delivery_status = b.status,
      delivery_updated_at = b.at,
      delivery_error = case when b.status = 'failed' then b.errors else m.delivery_error end,
      updated_at = now()
    from best b
    where m.wamid = b.wamid and m.direction = 'outbound'
      and b.rank > case m.delivery_status
                     when 'accepted' then 0 when 'sent' then 1 when 'delivered' then 2 else 3 end
    returning m.wamid, m.delivery_status, m.customer_key, b.errors, b.at
  ),
  window_closed as (
    -- 131047: WhatsApp would only take a template, at the status's time: a reply to anything
    -- the customer wrote before then must be one; their next message opens the window again.
    update public.chat_sessions s set
      window_closed_at = greatest(s.window_closed_at, a.at), updated_at = now()
    from applied a
    where s.customer_key = a.customer_key and a.delivery_status = 'failed'
      and jsonb_typeof(a.errors) = 'array' and a.errors @> '[{"code": 131047}]'
    returning 1
  )
  select case when exists (select 1 from bad) then null else
    coalesce(jsonb_agg(jsonb_build_object(
      'wamid', b.wamid,
      -- the CTE's update is not visible to this query's snapshot: take the new status from it
      'delivery_status', coalesce(a.delivery_status, m.delivery_status),
      'applied', a.wamid is not null)
      order by b.wamid), '[]'::jsonb)
    end
  into v_result
  from best b
  left join applied a on a.wamid = b.wamid
  left join public.whatsapp_messages m on m.wamid = b.wamid and m.direction = 'outbound';

  if v_result is null then
    raise exception 'each status needs a wamid, a time (at) and one of sent, delivered, read, failed'
      using errcode = '22023';
  end if;
  return v_result;
end;
$$;

-- save_turn_replies: keep the agent's answer to a running turn before sending it, so that a
-- turn retried after a crash resends the answer instead of asking the agent again (a
-- completion is not idempotent). False when the turn no longer holds the customer.
create function public.save_turn_replies(p_turn_id uuid, p_chat_id text, p_replies jsonb)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if jsonb_typeof(p_replies) is distinct from 'array' then
    raise exception 'p_replies must be a JSON array' using errcode = '22023';
  end if;
  update public.chat_sessions set
    turn_chat_id = p_chat_id, turn_replies = p_replies, turn_replies_sent = 0, updated_at = now()
  where turn_id = p_turn_id;
  return found;
end;
$$;

-- record_sent_reply: one reply of the running turn went out: record it, and count it as sent
-- so a resumed turn does not send it again. A repeat (same wamids) is harmless.
-- p_message: {wamid, message_type, body?, payload?}, or an array of them when WhatsApp took the
-- reply in several parts. Returns {recorded, replies_sent}.
create function public.record_sent_reply(p_turn_id uuid, p_message jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_session public.chat_sessions;
  v_recorded integer;
begin
  select * into v_session from public.chat_sessions where turn_id = p_turn_id for update;
  if not found then
    raise exception 'turn % no longer holds its customer', p_turn_id using errcode = 'P0002';
  end if;
  insert into public.whatsapp_messages
    (wamid, customer_key, direction, message_type, body, payload, sent_at, chat_id, turn_id, delivery_status)
  select m.wamid, v_session.customer_key, 'outbound', m.message_type, m.body, m.payload, clock_timestamp(),
         v_session.turn_chat_id, p_turn_id, 'accepted'
  from jsonb_to_recordset(case jsonb_typeof(p_message) when 'object' then jsonb_build_array(p_message)
                                                      else p_message end)
    as m(wamid text, message_type text, body text, payload jsonb)
  on conflict (wamid) do nothing;
  get diagnostics v_recorded = row_count;
  update public.chat_sessions set
    -- One reply, however many parts: counted once, and only the first time.
    turn_replies_sent = least(turn_replies_sent + (v_recorded > 0)::integer, jsonb_array_length(turn_replies)),
    last_outbound_at = now(), last_activity_at = now(), updated_at = now()
  where customer_key = v_session.customer_key
  returning * into v_session;
  return jsonb_build_object('recorded', v_recorded > 0, 'replies_sent', v_session.turn_replies_sent);
end;
$$;

-- set_opt_out: the customer asked to stop (true) or to start again (false).
-- Returns {changed, opted_out_at}: changed is false when they already were.
create function public.set_opt_out(p_customer_key text, p_opted_out boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_before timestamptz;
  v_after timestamptz;
begin
  if p_opted_out is null then
    raise exception 'p_opted_out is required' using errcode = '22023';
  end if;
  select opted_out_at into v_before from public.chat_sessions where customer_key = p_customer_key for update;
  if not found then
    raise exception 'no session for customer %', p_customer_key using errcode = 'P0002';
  end if;
  update public.chat_sessions set
    opted_out_at = case when p_opted_out then coalesce(opted_out_at, now()) end,
    last_activity_at = now(), updated_at = now()
  where customer_key = p_customer_key
  returning opted_out_at into v_after;
  return jsonb_build_object('changed', (v_before is null) <> (v_after is null), 'opted_out_at', v_after);
end;
$$;

-- complete_form_submission: the form's outreach is done: the chat it started, and the template
-- sent (p_outbound: [{wamid, message_type, body?, payload?}]). A repeat is harmless.
-- Returns {completed}: false when it was already started.
create function public.complete_form_submission(p_submission_id uuid, p_chat_id text, p_outbound jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_submission public.form_submissions;
begin
  if jsonb_typeof(p_outbound) is distinct from 'array' then
    raise exception 'p_outbound must be a JSON array of messages' using errcode = '22023';
  end if;
  select * into v_submission from public.form_submissions where id = p_submission_id for update;
  if not found then
    raise exception 'no form submission %', p_submission_id using errcode = 'P0002';
  end if;
  insert into public.whatsapp_messages
    (wamid, customer_key, direction, message_type, body, payload, sent_at, chat_id, delivery_status)
  select m.wamid, v_submission.customer_key, 'outbound', m.message_type, m.body, m.payload, clock_timestamp(),
         p_chat_id, 'accepted'
  from jsonb_to_recordset(p_outbound) as m(wamid text, message_type text, body text, payload jsonb)
  on conflict (wamid) do nothing;
  update public.form_submissions set status = 'started', chat_id = p_chat_id, failure_reason = null,
    updated_at = now()
  where id = p_submission_id and status <> 'started';
  update public.chat_sessions set last_outbound_at = now(), last_activity_at = now(), updated_at = now()
  where customer_key = v_submission.customer_key;
  return jsonb_build_object('completed', v_submission.status <> 'started');
end;
$$;

-- fail_form_submission: the outreach could not be done; the reason is kept for the dashboard.
create function public.fail_form_submission(p_submission_id uuid, p_reason text)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if p_reason is null or length(trim(p_reason)) = 0 then
    raise exception 'p_reason is required' using errcode = '22023';
  end if;
  update public.form_submissions set status = 'failed', failure_reason = left(p_reason, 2000), updated_at = now()
  where id = p_submission_id and status <> 'started';
  return found;
end;
$$;

-- record_webhook: everything one webhook delivery carries, in one transaction: inbound messages
-- (once per wamid), delivery statuses, and what could not be used (kept for inspection).
-- Returns {messages: [{wamid, customer_key, is_new, waiting}], statuses: [...]}. `waiting` says a
-- message still waits for a turn, so a delivery repeated after a failed enqueue queues it again.
create function public.record_webhook(
  p_messages jsonb default '[]'::jsonb,
  p_statuses jsonb default '[]'::jsonb,
  p_unprocessed jsonb default '[]'::jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_messages jsonb := '[]'::jsonb;
  v_statuses jsonb := '[]'::jsonb;
begin
  if jsonb_typeof(p_unprocessed) is distinct from 'array' then
    raise exception 'p_unprocessed must be a JSON array' using errcode = '22023';
  end if;
  if jsonb_array_length(coalesce(p_messages, '[]'::jsonb)) > 0 then
    v_messages := public.record_inbound_messages(p_messages);
    -- A statement of its own, so that its snapshot sees the rows just recorded.
    select coalesce(jsonb_agg(m.recorded || jsonb_build_object('waiting', exists (
             select 1 from public.whatsapp_messages w where w.wamid = m.recorded->>'wamid' and w.state = 'pending'))
           order by m.ord), '[]'::jsonb)
    into v_messages
    from jsonb_array_elements(v_messages) with ordinality as m(recorded, ord);
  end if;
  if jsonb_array_length(coalesce(p_statuses, '[]'::jsonb)) > 0 then
    v_statuses := public.record_delivery_statuses(p_statuses);
  end if;
  insert into public.unprocessed_webhook_events (reason, payload)
  select coalesce(e->>'reason', 'unknown'), coalesce(e->'payload', 'null'::jsonb)
  from jsonb_array_elements(p_unprocessed) as e;
  return jsonb_build_object('messages', v_messages, 'statuses', v_statuses);
end;
$$;

-- Backend-only: the API roles may not call any of these; service_role may.
revoke execute on function
  public.record_inbound_messages(jsonb),
  public.record_form_submission(text, text, text, text, boolean, jsonb),
  public.claim_turn(text, integer, integer),
  public.attach_chat(text, text, text, text),
  public.complete_turn(uuid, text, text, jsonb),
  public.fail_turn(uuid, text, boolean),
  public.record_delivery_statuses(jsonb),
  public.save_turn_replies(uuid, text, jsonb),
  public.record_sent_reply(uuid, jsonb),
  public.set_opt_out(text, boolean),
  public.complete_form_submission(uuid, text, jsonb),
  public.fail_form_submission(uuid, text),
  public.record_webhook(jsonb, jsonb, jsonb)
  from public, anon, authenticated;
grant execute on function
  public.record_inbound_messages(jsonb),
  public.record_form_submission(text, text, text, text, boolean, jsonb),
  public.claim_turn(text, integer, integer),
  public.attach_chat(text, text, text, text),
  public.complete_turn(uuid, text, text, jsonb),
  public.fail_turn(uuid, text, boolean),
  public.record_delivery_statuses(jsonb),
  public.save_turn_replies(uuid, text, jsonb),
  public.record_sent_reply(uuid, jsonb),
  public.set_opt_out(text, boolean),
  public.complete_form_submission(uuid, text, jsonb),
  public.fail_form_submission(uuid, text),
  public.record_webhook(jsonb, jsonb, jsonb)
  to service_role;

comment on function public.record_inbound_messages(jsonb) is 'Store inbound WhatsApp messages once per wamid; says which are new.';
comment on function public.record_form_submission(text, text, text, text, boolean, jsonb) is 'Store a form submission once per idempotency key.';
comment on function public.claim_turn(text, integer, integer) is 'Claim all waiting messages of a customer for one turn, under a lease.';
comment on function public.attach_chat(text, text, text, text) is 'Attach or rotate a customer''s Retell chat (compare-and-set; history kept).';
comment on function public.complete_turn(uuid, text, text, jsonb) is 'Record the replies of a turn and mark its messages answered.';
comment on function public.fail_turn(uuid, text, boolean) is 'Give up a turn: release its messages for a retry or mark them failed.';
comment on function public.record_delivery_statuses(jsonb) is 'Apply WhatsApp delivery statuses to outbound messages, never backwards.';
comment on function public.save_turn_replies(uuid, text, jsonb) is 'Keep the agent''s answer to a turn until it is sent.';
comment on function public.record_sent_reply(uuid, jsonb) is 'Record one reply of a turn as sent.';
comment on function public.set_opt_out(text, boolean) is 'Opt a customer out of (or back into) the agent''s messages.';
comment on function public.complete_form_submission(uuid, text, jsonb) is 'Mark a form''s outreach done: its chat and the template sent.';
comment on function public.record_webhook(jsonb, jsonb, jsonb) is 'Record one webhook delivery: messages, statuses, and what could not be used.';
comment on function public.fail_form_submission(uuid, text) is 'Mark a form''s outreach failed, with the reason.';

notify pgrst, 'reload schema';
