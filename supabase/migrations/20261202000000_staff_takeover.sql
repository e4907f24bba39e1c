-- A person can take over and hand back:
-- * pause_conversation / resume_conversation, from the Supabase SQL editor or the bridge, and
--   record_human_request when the agent asks for a person; a pause
--   ends by itself when its time runs out (the sweeper records that it did), and every pause,
--   resume, staff message and request for a person is kept in conversation_events;
-- * staff reply by inserting a row into staff_messages (the Table Editor): a Database Webhook hands
--   it to the bridge, which sends it through the customer's queue (claim_staff_message,
--   complete_staff_message, refuse_staff_message, release_staff_message); the insert pauses the
--   agent; the sweeper picks up a row the webhook missed;
-- * messages staff send from the WhatsApp Business app on a shared number (Meta's
--   smb_message_echoes) are recorded as staff messages and pause the agent (record_webhook's
--   p_echoes, record_business_echoes);
-- * nothing said while paused is lost: a paused customer's turn keeps their messages as `held`
--   (hold_turn), and the next turn after the pause gets the held messages and what staff sent, in
--   order (claim_turn's `context`), marked as told to the agent once that turn answers
--   (complete_turn);
-- * conversation_transcript and needs_attention show staff what they need.
-- Every step locks a customer's session before their messages, as the others do.

-- Who wrote each message, and whether the agent was told --------------------------------------------
alter table public.whatsapp_messages drop constraint whatsapp_messages_state_by_direction;
alter table public.whatsapp_messages add constraint whatsapp_messages_state_by_direction check (
  (direction = 'inbound' and state is not null and delivery_status is null
      and state in ('pending', 'in_progress', 'answered', 'failed', 'held'))
  or (direction = 'outbound' and state is null and delivery_status is not null
      and delivery_status in ('accepted', 'sent', 'delivered', 'read', 'failed')));
comment on column public.whatsapp_messages.state is
  'Inbound only: pending → in_progress → answered, or failed (see failure_reason); held while a person had '
  'taken over (the agent is told them with the next turn after the pause, then answered).';

alter table public.whatsapp_messages add column author text
  check (author in ('customer', 'agent', 'staff', 'bridge'));
alter table public.whatsapp_messages add column given_to_agent_at timestamptz;
alter table public.whatsapp_messages add column context_turn_id uuid;
comment on column public.whatsapp_messages.author is
  'Who wrote it: customer (inbound), agent (the agent''s replies), staff (a person, from staff_messages or the '
  'WhatsApp Business app), bridge (templates and the bridge''s own messages).';
comment on column public.whatsapp_messages.given_to_agent_at is
  'When the agent was told this message in a completion''s text. Empty for a held message or a staff message '
  'the agent has not been told yet: the next turn gives them to it as context.';
comment on column public.whatsapp_messages.context_turn_id is
  'The turn whose completion carries this held or staff message as context; it is marked told when that turn answers.';

-- Earlier rows: by direction; the bridge's outbound templates went out as templates.
update public.whatsapp_messages set author = case
    when direction = 'inbound' then 'customer'
    when message_type = 'template' then 'bridge'
    else 'agent' end
where author is null;

-- The steps that record messages do not name the author: it follows from what they record.
create function public.whatsapp_messages_default_author()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.author is null then
    new.author := case
      when new.direction = 'inbound' then 'customer'
      when new.message_type = 'template' then 'bridge'
      else 'agent' end;
  end if;
  return new;
end;
$$;
create trigger whatsapp_messages_default_author before insert on public.whatsapp_messages
  for each row execute function public.whatsapp_messages_default_author();
comment on function public.whatsapp_messages_default_author() is
  'Trigger: a message recorded without an author is the customer''s (inbound), the bridge''s (a template) or the agent''s.';

alter table public.whatsapp_messages alter column author set not null;
alter table public.whatsapp_messages add constraint whatsapp_messages_author_by_direction check (
  (direction = 'inbound') = (author = 'customer'));

-- A paused customer's messages, and staff's, not yet told to the agent.
create index whatsapp_messages_untold on public.whatsapp_messages (customer_key, sent_at, id)
  where given_to_agent_at is null and (state = 'held' or author = 'staff');

-- The history staff read -------------------------------------------------------------------------------
create table public.conversation_events (
  id           bigint generated always as identity primary key,
  customer_key public.customer_key not null references public.chat_sessions (customer_key) on delete cascade,
  kind         text not null check (kind in ('paused', 'resumed', 'staff_message', 'human_requested', 'pause_expired')),
  at           timestamptz not null default now(),
  by           text check (length(by) <= 320),
  reason       text check (length(reason) <= 2000)
);
create index conversation_events_by_customer on public.conversation_events (customer_key, at desc, id desc);

comment on table public.conversation_events is
  'What happened to each conversation besides its messages: pauses, resumes, staff messages, requests for a person.';
comment on column public.conversation_events.id is 'Row number, in order of recording.';
comment on column public.conversation_events.customer_key is 'The customer whose conversation it is.';
comment on column public.conversation_events.kind is
  'paused (a person took over), resumed (handed back to the agent), staff_message (staff sent a message), '
  'human_requested (the agent asked for a person), pause_expired (a pause ran out by itself).';
comment on column public.conversation_events.at is 'When it happened.';
comment on column public.conversation_events.by is
  'Who did it: the staff member''s e-mail or database user, agent, WhatsApp Business app, or sweeper.';
comment on column public.conversation_events.reason is 'Why, as they said (for a pause, a request for a person).';

-- The bridge's settings ------------------------------------------------------------------------------
create table public.bridge_settings (
  id                    boolean primary key default true check (id),
  pause_default_minutes integer not null default 60 check (pause_default_minutes between 1 and 525600),
  updated_at            timestamptz not null default now()
);
insert into public.bridge_settings (id) values (true);

comment on table public.bridge_settings is 'The bridge''s settings staff may change in the dashboard: one row.';
comment on column public.bridge_settings.id is 'Always true: there is one row.';
comment on column public.bridge_settings.pause_default_minutes is
  'How long pause_conversation pauses the agent when no minutes are given, and how long a staff message pauses it '
  '(the bridge''s PAUSE_DEFAULT_MINUTES, 60 unless changed).';
comment on column public.bridge_settings.updated_at is 'When a setting last changed (set it when you change one).';

-- Staff's messages ---------------------------------------------------------------------------------------
create table public.staff_messages (
  id            bigint generated always as identity primary key,
  customer_key  public.customer_key not null references public.chat_sessions (customer_key) on delete cascade,
  body          text not null check (length(body) between 1 and 4096),
  created_at    timestamptz not null default now(),
  created_by    text not null
                default coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email', session_user::text)
                check (length(created_by) between 1 and 320),
  status        text not null default 'queued' check (status in ('queued', 'sending', 'sent', 'refused', 'failed')),
  status_reason text check (length(status_reason) <= 2000),
  wamid         text unique check (length(wamid) between 1 and 256),
  sent_at       timestamptz,
  sweep_after   timestamptz,
  updated_at    timestamptz not null default now(),
  constraint staff_messages_sent_has_wamid check (status <> 'sent' or (wamid is not null and sent_at is not null)),
  constraint staff_messages_refused_has_reason check (status not in ('refused', 'failed') or status_reason is not null),
  constraint staff_messages_sending_has_lease check (status <> 'sending' or sweep_after is not null)
);
create index staff_messages_by_customer on public.staff_messages (customer_key, created_at desc);
create index staff_messages_unsent on public.staff_messages (created_at, id) where status in ('queued', 'sending');

comment on table public.staff_messages is
  'Messages staff send the customer as the business: insert a row (customer_key, body) and the bridge sends it on '
  'WhatsApp through the customer''s queue and pauses the agent. Outside the 24-hour window it is refused.';
comment on column public.staff_messages.id is 'Row number, in order of writing.';
comment on column public.staff_messages.customer_key is 'The customer to write to (folded phone digits, as in chat_sessions).';
comment on column public.staff_messages.body is 'The text to send (up to 4096 characters).';
comment on column public.staff_messages.created_at is 'When it was written.';
comment on column public.staff_messages.created_by is
  'Who wrote it: the e-mail of the signed-in user, else the database user (the dashboard''s), or WhatsApp Business app.';
comment on column public.staff_messages.status is
  'queued → sending → sent; refused (outside the 24-hour window: WhatsApp takes only templates) or failed (see status_reason).';
comment on column public.staff_messages.status_reason is 'Why it was refused or failed, or why a send is being retried.';
comment on column public.staff_messages.wamid is 'WhatsApp''s id of the message sent (its row in whatsapp_messages).';
comment on column public.staff_messages.sent_at is 'When WhatsApp took it.';
comment on column public.staff_messages.sweep_after is
  'The sweeper queues it again after this time if it is still not sent (a send in progress holds it until then).';
comment on column public.staff_messages.updated_at is 'When this row last changed.';

-- Backend-only, as every other table: staff use the dashboard (the database's own user) or the
-- service role; the API roles get nothing.
alter table public.conversation_events enable row level security;
alter table public.bridge_settings enable row level security;
alter table public.staff_messages enable row level security;
revoke all on table public.conversation_events, public.bridge_settings, public.staff_messages
  from public, anon, authenticated;
grant select, insert, update, delete on table public.conversation_events, public.bridge_settings,
  public.staff_messages to service_role;
revoke all on sequence public.conversation_events_id_seq, public.staff_messages_id_seq
  from public, anon, authenticated;
grant usage, select on sequence public.conversation_events_id_seq, public.staff_messages_id_seq to service_role;

-- Pauses expire by time: the sweeper looks for the ones that just did.
create index chat_sessions_paused on public.chat_sessions (paused_until) where paused_until is not null;

-- pause_conversation: a person takes over for p_minutes (null: bridge_settings.pause_default_minutes)
-- from now, for a customer the bridge may not have met yet. The agent stores the customer's messages
-- without answering them until then, or until resume_conversation. Recorded as a 'paused' event by
-- p_by (null: the signed-in user's e-mail, else the database user). Returns {paused_until}.
create function public.pause_conversation(
  p_customer_key text,
  p_minutes integer default null,
  p_reason text default null,
  p_by text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_minutes integer;
  v_until timestamptz;
begin
  if p_minutes is not null and (p_minutes < 1 or p_minutes > 525600) then
    raise exception 'p_minutes must be between 1 and 525600 (a year), got %', p_minutes using errcode = '22023';
  end if;
  v_minutes := coalesce(p_minutes, (select pause_default_minutes from public.bridge_settings where id), 60);

  insert into public.chat_sessions (customer_key) values (p_customer_key) on conflict (customer_key) do nothing;
  perform 1 from public.chat_sessions where customer_key = p_customer_key for update;
  update public.chat_sessions set
    paused_until = now() + make_interval(mins => v_minutes), last_activity_at = now(), updated_at = now()
  where customer_key = p_customer_key
  returning paused_until into v_until;

  insert into public.conversation_events (customer_key, kind, by, reason)
  values (p_customer_key, 'paused',
          left(coalesce(p_by, nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email', session_user::text), 320),
          left(coalesce(p_reason, format('for %s minutes', v_minutes)), 2000));
  return jsonb_build_object('paused_until', v_until);
end;
$$;

-- resume_conversation: hand the conversation back to the agent now. Its next turn tells the agent
-- what was said during the pause. Recorded as a 'resumed' event when there was a pause.
-- Returns {resumed}: false when the customer was not paused (or their pause had run out).
create function public.resume_conversation(p_customer_key text, p_by text default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_before timestamptz;
begin
  select paused_until into v_before from public.chat_sessions where customer_key = p_customer_key for update;
  if not found or v_before is null then
    return jsonb_build_object('resumed', false);
  end if;
  update public.chat_sessions set paused_until = null, last_activity_at = now(), updated_at = now()
  where customer_key = p_customer_key;
  insert into public.conversation_events (customer_key, kind, by)
  values (p_customer_key, 'resumed',
          left(coalesce(p_by, nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email', session_user::text), 320));
  return jsonb_build_object('resumed', v_before > now());
end;
$$;

-- hold_turn: the turn found its customer paused: as complete_turn with nothing sent, but its
-- messages are kept as held (not answered), for the agent to be told after the pause.
-- Returns {completed, held}: completed = false means another turn took over.
create function public.hold_turn(p_turn_id uuid, p_customer_key text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_held_turn boolean;
  v_held integer;
begin
  select coalesce(turn_id = p_turn_id, false) into v_held_turn
  from public.chat_sessions where customer_key = p_customer_key for update;
  if not found then
    raise exception 'no session for customer %', p_customer_key using errcode = 'P0002';
  end if;

  update public.whatsapp_messages set
    state = 'held', given_to_agent_at = null, failure_reason = null, updated_at = now()
  where turn_id = p_turn_id and customer_key = p_customer_key and state = 'in_progress';
  get diagnostics v_held = row_count;

  if v_held_turn then
    update public.chat_sessions set turn_id = null, turn_lease_expires_at = null, turn_chat_id = null,
      turn_replies = null, turn_replies_sent = 0, last_activity_at = now(), updated_at = now()
    where customer_key = p_customer_key;
  end if;

  return jsonb_build_object(
    'completed', v_held_turn or v_held > 0 or exists (
      select 1 from public.whatsapp_messages where turn_id = p_turn_id and state = 'held'),
    'held', v_held);
end;
$$;

-- record_human_request: the agent asked for a person (its Retell custom function): the customer is
-- paused as by pause_conversation (p_minutes, p_reason, by p_by) and a 'human_requested' event
-- recorded with the reason, in one transaction. Returns {paused_until}.
create function public.record_human_request(
  p_customer_key text,
  p_minutes integer default null,
  p_reason text default null,
  p_by text default 'agent'
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_paused jsonb;
begin
  v_paused := public.pause_conversation(p_customer_key, p_minutes,
    coalesce('a person was asked for: ' || p_reason, 'a person was asked for'), p_by);
  insert into public.conversation_events (customer_key, kind, by, reason)
  values (p_customer_key, 'human_requested', left(coalesce(p_by, 'agent'), 320), left(p_reason, 2000));
  return v_paused;
end;
$$;

-- The staff message trigger: a staff message pauses the agent (for bridge_settings'
-- pause_default_minutes, unless it is paused longer already) and is recorded in the history.
create function public.staff_messages_take_over()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_minutes integer := coalesce((select pause_default_minutes from public.bridge_settings where id), 60);
begin
  if not exists (select 1 from public.chat_sessions
                 where customer_key = new.customer_key
                   and paused_until >= now() + make_interval(mins => v_minutes)) then
    perform public.pause_conversation(new.customer_key, v_minutes, 'staff replied', new.created_by);
  end if;
  insert into public.conversation_events (customer_key, kind, by, reason)
  values (new.customer_key, 'staff_message', left(new.created_by, 320), format('staff message %s', new.id));
  return null;
end;
$$;
create trigger staff_messages_take_over after insert on public.staff_messages
  for each row execute function public.staff_messages_take_over();
comment on function public.staff_messages_take_over() is
  'Trigger: a staff message pauses the agent (unless it is paused longer) and is recorded in conversation_events.';

-- claim_staff_message: take a staff message to send it, under a lease of p_lease_seconds: a queued
-- one, or one being sent whose lease ran out (its worker died). Returns {status, claimed, message,
-- session, lease_expires_at?}:
-- * status 'claimed' (claimed = true): ours to send; the session carries last_inbound_at and
--   window_closed_at, for the 24-hour window;
-- * 'busy': a turn holds the customer (its lease is live, or its agent's answer is not all sent):
--   the message stays queued, to be sent after that turn (lease_expires_at), never between its
--   replies;
-- * 'not_claimed': nothing to do: it is sent, refused, failed or being sent, or does not exist
--   (message null). A repeated Database Webhook delivery sends once.
create function public.claim_staff_message(p_id bigint, p_lease_seconds integer default 300)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_customer_key text;
  v_message public.staff_messages;
  v_session public.chat_sessions;
begin
  if p_lease_seconds is null or p_lease_seconds < 1 or p_lease_seconds > 43200 then
    raise exception 'p_lease_seconds must be between 1 and 43200, got %', p_lease_seconds using errcode = '22023';
  end if;
  select customer_key into v_customer_key from public.staff_messages where id = p_id;
  if not found then
    return jsonb_build_object('status', 'not_claimed', 'claimed', false, 'message', null, 'session', null);
  end if;
  -- The session first, as every step locks it before the customer's messages.
  select * into v_session from public.chat_sessions where customer_key = v_customer_key for update;
  select * into v_message from public.staff_messages where id = p_id for update;

  if not (v_message.status = 'queued' or (v_message.status = 'sending' and v_message.sweep_after <= now())) then
    return jsonb_build_object('status', 'not_claimed', 'claimed', false, 'message', to_jsonb(v_message),
      'session', to_jsonb(v_session));
  end if;
  if v_session.turn_id is not null
     and (v_session.turn_lease_expires_at > now() or v_session.turn_replies is not null) then
    return jsonb_build_object('status', 'busy', 'claimed', false, 'message', to_jsonb(v_message),
      'session', to_jsonb(v_session),
      'lease_expires_at', greatest(v_session.turn_lease_expires_at, now() + interval '2 seconds'));
  end if;

  update public.staff_messages set
    status = 'sending', sweep_after = now() + make_interval(secs => p_lease_seconds), updated_at = now()
  where id = p_id
  returning * into v_message;
  return jsonb_build_object('status', 'claimed', 'claimed', true, 'message', to_jsonb(v_message),
    'session', to_jsonb(v_session));
end;
$$;

-- complete_staff_message: WhatsApp took the staff message: p_outbound, [{wamid, message_type?,
-- body?, payload?}] (its parts, if it took it in several), is recorded as outbound (author staff,
-- not yet told to the agent) and the message marked sent with the first part's wamid. A repeat
-- is harmless. Returns {completed}: false when it was already sent.
create function public.complete_staff_message(p_id bigint, p_outbound jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_customer_key text;
  v_message public.staff_messages;
  v_first_wamid text;
begin
  if jsonb_typeof(p_outbound) is distinct from 'array' or jsonb_array_length(p_outbound) = 0
     or exists (select 1 from jsonb_array_elements(p_outbound) e where nullif(e->>'wamid', '') is null) then
    raise exception 'p_outbound must be a JSON array of the parts sent, each with its wamid' using errcode = '22023';
  end if;
  select customer_key into v_customer_key from public.staff_messages where id = p_id;
  if not found then
    raise exception 'no staff message %', p_id using errcode = 'P0002';
  end if;
  perform 1 from public.chat_sessions where customer_key = v_customer_key for update;
  select * into v_message from public.staff_messages where id = p_id for update;

  insert into public.whatsapp_messages
    (wamid, customer_key, direction, author, message_type, body, payload, sent_at, delivery_status)
  select m.wamid, v_customer_key, 'outbound', 'staff', coalesce(m.message_type, 'text'),
         coalesce(m.body, case when m.ord = 1 then v_message.body end), m.payload, clock_timestamp(), 'accepted'
  from rows from (jsonb_to_recordset(p_outbound) as (wamid text, message_type text, body text, payload jsonb))
    with ordinality as m(wamid, message_type, body, payload, ord)
  order by m.ord
  on conflict (wamid) do nothing;
  v_first_wamid := p_outbound->0->>'wamid';
  if v_message.status <> 'sent' then
    update public.staff_messages set
      status = 'sent', wamid = v_first_wamid, sent_at = now(), status_reason = null, sweep_after = null,
      updated_at = now()
    where id = p_id;
  end if;
  update public.chat_sessions set last_outbound_at = now(), last_activity_at = now(), updated_at = now()
  where customer_key = v_customer_key;
  return jsonb_build_object('completed', v_message.status <> 'sent');
end;
$$;

-- refuse_staff_message: the staff message will not be sent: refused (p_refused: outside the 24-hour
-- window) or failed (WhatsApp would not take it), with the reason on the row. Only a message not
-- sent yet; returns whether this one was.
create function public.refuse_staff_message(p_id bigint, p_reason text, p_refused boolean default true)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if p_reason is null or length(trim(p_reason)) = 0 then
    raise exception 'p_reason is required' using errcode = '22023';
  end if;
  update public.staff_messages set
    status = case when coalesce(p_refused, true) then 'refused' else 'failed' end,
    status_reason = left(p_reason, 2000), sweep_after = null, updated_at = now()
  where id = p_id and status in ('queued', 'sending');
  return found;
end;
$$;

-- release_staff_message: the send failed for a reason that may pass: the message goes back to
-- queued with the reason, for its job's retry in p_retry_in_seconds (or the sweeper, a minute
-- after that). Only a message not sent yet; returns whether this one was.
create function public.release_staff_message(p_id bigint, p_reason text, p_retry_in_seconds integer default 0)
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
  update public.staff_messages set
    status = 'queued', status_reason = left(p_reason, 2000),
    sweep_after = now() + make_interval(secs => p_retry_in_seconds) + interval '1 minute', updated_at = now()
  where id = p_id and status in ('queued', 'sending');
  return found;
end;
$$;

-- record_business_echoes: messages staff sent from the WhatsApp Business app on the bridge's number
-- (Meta's smb_message_echoes). p_echoes: [{wamid, customer_key, message_type, sent_at, body?,
-- payload?, wa_id?}]. Each new one is recorded as an outbound message (author staff, not yet told
-- to the agent) and as a sent staff message, which pauses the agent; a customer the bridge has not
-- met gets a session. A repeated echo changes nothing. Returns [{wamid, customer_key, is_new}].
create function public.record_business_echoes(p_echoes jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_echo record;
  v_result jsonb := '[]'::jsonb;
  v_new boolean;
begin
  if jsonb_typeof(p_echoes) is distinct from 'array' then
    raise exception 'p_echoes must be a JSON array of messages' using errcode = '22023';
  end if;
  if exists (select 1 from jsonb_to_recordset(p_echoes)
               as e(wamid text, customer_key text, message_type text, sent_at timestamptz)
             where e.wamid is null or e.customer_key is null or e.message_type is null or e.sent_at is null) then
    raise exception 'each echo needs a wamid, a customer_key, a message_type and a sent_at' using errcode = '22023';
  end if;

  -- Sessions in a fixed order, so concurrent deliveries cannot deadlock.
  insert into public.chat_sessions (customer_key, wa_id)
  select distinct on (e.customer_key) e.customer_key, e.wa_id
  from jsonb_to_recordset(p_echoes) as e(customer_key text, wa_id text)
  order by e.customer_key
  on conflict (customer_key) do nothing;
  perform 1 from public.chat_sessions s
  where s.customer_key in (select e.customer_key from jsonb_to_recordset(p_echoes) as e(customer_key text))
  order by s.customer_key
  for update of s;

  for v_echo in
    select e.ord, m.* from jsonb_array_elements(p_echoes) with ordinality as e(echo, ord)
    cross join lateral jsonb_to_record(e.echo) as m(
      wamid text, customer_key text, message_type text, sent_at timestamptz, body text, payload jsonb)
    order by m.customer_key, m.sent_at, e.ord
  loop
    insert into public.whatsapp_messages
      (wamid, customer_key, direction, author, message_type, body, payload, sent_at, delivery_status)
    values (v_echo.wamid, v_echo.customer_key, 'outbound', 'staff', v_echo.message_type, v_echo.body,
            v_echo.payload, v_echo.sent_at, 'sent')
    on conflict (wamid) do nothing;
    v_new := found;
    if v_new then
      insert into public.staff_messages (customer_key, body, created_by, status, wamid, sent_at)
      values (v_echo.customer_key,
              left(coalesce(nullif(v_echo.body, ''), format('(%s)', v_echo.message_type)), 4096),
              'WhatsApp Business app', 'sent', v_echo.wamid, v_echo.sent_at)
      on conflict (wamid) do nothing;
      update public.chat_sessions set
        last_outbound_at = greatest(last_outbound_at, v_echo.sent_at), last_activity_at = now(), updated_at = now()
      where customer_key = v_echo.customer_key;
    end if;
    v_result := v_result || jsonb_build_object('ord', v_echo.ord, 'wamid', v_echo.wamid,
      'customer_key', v_echo.customer_key, 'is_new', v_new);
  end loop;

  return coalesce((select jsonb_agg(r - 'ord' order by (r->>'ord')::bigint) from jsonb_array_elements(v_result) r),
                  '[]'::jsonb);
end;
$$;

-- record_webhook, with the business app's echoes -------------------------------------------------------
-- The argument list changes, so the four-argument function is dropped: two overloads would leave
-- PostgREST unable to choose between them for a call that names only the first four.
drop function public.record_webhook(jsonb, jsonb, jsonb, jsonb);

-- record_webhook: everything one webhook delivery carries, in one transaction: inbound messages
-- (once per wamid), delivery statuses, opt-outs, the business app's echoes (record_business_echoes),
-- and what could not be used (kept for inspection).
-- Returns {messages: [{wamid, customer_key, is_new, waiting}], statuses: [...],
-- opt_outs: [{customer_key, changed}], echoes: [{wamid, customer_key, is_new}]}.
create function public.record_webhook(
  p_messages jsonb default '[]'::jsonb,
  p_statuses jsonb default '[]'::jsonb,
  p_unprocessed jsonb default '[]'::jsonb,
  p_opt_outs jsonb default '[]'::jsonb,
  p_echoes jsonb default '[]'::jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_messages jsonb := '[]'::jsonb;
  v_statuses jsonb := '[]'::jsonb;
  v_opt_outs jsonb := '[]'::jsonb;
  v_echoes jsonb := '[]'::jsonb;
  v_customer_key text;
begin
  if jsonb_typeof(p_unprocessed) is distinct from 'array' then
    raise exception 'p_unprocessed must be a JSON array' using errcode = '22023';
  end if;
  if p_opt_outs is not null and jsonb_typeof(p_opt_outs) <> 'array' then
    raise exception 'p_opt_outs must be a JSON array' using errcode = '22023';
  end if;
  if p_echoes is not null and jsonb_typeof(p_echoes) <> 'array' then
    raise exception 'p_echoes must be a JSON array' using errcode = '22023';
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
  if jsonb_array_length(coalesce(p_echoes, '[]'::jsonb)) > 0 then
    v_echoes := public.record_business_echoes(p_echoes);
  end if;
  if jsonb_array_length(coalesce(p_statuses, '[]'::jsonb)) > 0 then
    v_statuses := public.record_delivery_statuses(p_statuses);
  end if;
  if jsonb_array_length(coalesce(p_opt_outs, '[]'::jsonb)) > 0 then
    if exists (select 1 from jsonb_to_recordset(p_opt_outs) as o(customer_key text) where o.customer_key is null) then
      raise exception 'each opt-out needs a customer_key' using errcode = '22023';
    end if;
    insert into public.chat_sessions (customer_key, wa_id, whatsapp_user_id)
    select distinct on (o.customer_key) o.customer_key, o.wa_id, o.whatsapp_user_id
    from jsonb_to_recordset(p_opt_outs) as o(customer_key text, wa_id text, whatsapp_user_id text)
    order by o.customer_key
    on conflict (customer_key) do nothing;
    for v_customer_key in
      select distinct o.customer_key from jsonb_to_recordset(p_opt_outs) as o(customer_key text) order by 1
    loop
      v_opt_outs := v_opt_outs || jsonb_build_object(
        'customer_key', v_customer_key,
        'changed', (public.set_opt_out(v_customer_key, true)->>'changed')::boolean);
    end loop;
  end if;
  insert into public.unprocessed_webhook_events (reason, payload)
  select left(coalesce(nullif(e->>'reason', ''), 'unknown'), 2000), coalesce(e->'payload', 'null'::jsonb)
  from jsonb_array_elements(p_unprocessed) as e;
  return jsonb_build_object('messages', v_messages, 'statuses', v_statuses, 'opt_outs', v_opt_outs,
    'echoes', v_echoes);
end;
$$;

-- claim_turn, with what the agent was not told ---------------------------------------------------------
-- As in 20261130000000_reliability, and a claimed turn also returns `context`: the customer's held
-- messages and the staff's messages (sent, not failed) that the agent has not been told, in time
-- order [{author, body, at, message_type}] (a message without text reads "(its type)"); they are
-- marked as this turn's context, told to the agent when it answers (complete_turn). A resumed turn
-- (the agent answered already) gets back the context its completion carried.
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
  v_context jsonb;
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

  update public.whatsapp_messages set
    state = 'failed',
    failure_reason = left(coalesce(failure_reason || '; ', '')
      || format('gave up after %s attempts: the turn never finished', attempts), 2000),
    turn_id = null,
    updated_at = now()
  where customer_key = p_customer_key and state = 'in_progress' and attempts >= p_max_attempts;

  v_lease_expires_at := now() + make_interval(secs => p_lease_seconds);
  if v_session.turn_replies is not null then
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
      return public.claim_turn(p_customer_key, p_lease_seconds, p_max_attempts);
    end if;
    return jsonb_build_object('status', 'idle', 'messages', '[]'::jsonb);
  end if;

  -- What the agent was not told: this turn's context (a resumed turn keeps its own).
  with context as (
    update public.whatsapp_messages m set context_turn_id = v_turn_id
    where m.customer_key = p_customer_key and m.given_to_agent_at is null
      and (m.state = 'held' or (m.author = 'staff' and m.delivery_status <> 'failed'))
      and (v_session.turn_replies is null or m.context_turn_id = v_turn_id)
    returning m.id, m.author, m.body, m.message_type, m.sent_at
  )
  select coalesce(jsonb_agg(jsonb_build_object(
           'author', c.author, 'body', coalesce(nullif(c.body, ''), format('(%s)', c.message_type)),
           'at', c.sent_at, 'message_type', c.message_type)
         order by c.sent_at, c.id), '[]'::jsonb)
  into v_context
  from context c;

  update public.chat_sessions set
    turn_id = v_turn_id, turn_lease_expires_at = v_lease_expires_at, sweep_after = null, updated_at = now()
  where customer_key = p_customer_key
  returning * into v_session;

  return jsonb_build_object('status', 'claimed', 'turn_id', v_turn_id,
    'lease_expires_at', v_lease_expires_at, 'session', to_jsonb(v_session), 'messages', v_messages,
    'context', v_context)
    || case when v_session.turn_replies is null then '{}'::jsonb
            else jsonb_build_object('resume', jsonb_build_object('chat_id', v_session.turn_chat_id,
                   'replies', v_session.turn_replies, 'replies_sent', v_session.turn_replies_sent)) end;
end;
$$;

-- complete_turn, telling the context ---------------------------------------------------------------
-- As in 20261125000100_conversation_steps, and when the turn answered with the agent (p_chat_id
-- set) its context (claim_turn) is marked told: given_to_agent_at = now(), held messages answered.
create or replace function public.complete_turn(
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
    state = 'answered', chat_id = p_chat_id, failure_reason = null,
    given_to_agent_at = case when p_chat_id is not null then coalesce(given_to_agent_at, now()) end,
    updated_at = now()
  where turn_id = p_turn_id and customer_key = p_customer_key and state = 'in_progress';
  get diagnostics v_answered = row_count;

  if p_chat_id is not null then
    update public.whatsapp_messages set
      given_to_agent_at = now(),
      state = case when state = 'held' then 'answered' else state end,
      chat_id = case when state = 'held' then p_chat_id else chat_id end,
      updated_at = now()
    where context_turn_id = p_turn_id and customer_key = p_customer_key and given_to_agent_at is null;
  end if;

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
    'completed', v_held or v_answered > 0 or exists (
      select 1 from public.whatsapp_messages
      where turn_id = p_turn_id and state = 'answered' and direction = 'inbound'),
    'answered', v_answered,
    'recorded', v_recorded);
end;
$$;

-- sweep_stranded_work, with staff messages and pauses -------------------------------------------------
-- As in 20261130000000_reliability, and:
-- * staff messages queued and not sent p_grace_seconds after they were written (or past their
--   sweep_after), or being sent by a worker whose lease ran out (put back to queued), are picked
--   for the caller to queue, each once per grace ("staff_messages": [{id, customer_key}]); those
--   not sent within p_give_up_hours are failed (gave_up.staff_messages);
-- * each pause that ran out (within p_give_up_hours) is recorded once as a 'pause_expired' event
--   ("pauses_expired": how many).
create or replace function public.sweep_stranded_work(
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
  v_gave_up_staff integer;
  v_turns jsonb;
  v_submissions jsonb;
  v_staff jsonb;
  v_pauses_expired integer;
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

  -- Staff messages not sent in time (none being sent now).
  with stale as (
    select sm.id from public.staff_messages sm
    where sm.created_at < v_give_up_before
      and (sm.status = 'queued' or (sm.status = 'sending' and sm.sweep_after <= now()))
    order by sm.created_at, sm.id
    for update skip locked
  ),
  gave_up as (
    update public.staff_messages sm set
      status = 'failed',
      status_reason = left(coalesce(sm.status_reason || '; ', '')
        || format('not sent within %s hours', p_give_up_hours), 2000),
      sweep_after = null,
      updated_at = now()
    from stale
    where sm.id = stale.id
    returning 1
  )
  select count(*) into v_gave_up_staff from gave_up;

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

  -- Staff messages nothing will send: queued past their time, or a send whose worker died (back
  -- to queued, so that the job the caller queues can claim it).
  with picked as (
    select sm.id, sm.created_at
    from public.staff_messages sm
    where (sm.status = 'queued' and coalesce(sm.sweep_after, sm.created_at + v_grace) <= now())
       or (sm.status = 'sending' and sm.sweep_after <= now())
    order by sm.created_at, sm.id
    limit p_limit
    for update skip locked
  ),
  queued as (
    update public.staff_messages sm set status = 'queued', sweep_after = now() + v_grace, updated_at = now()
    from picked p
    where sm.id = p.id
    returning sm.id, sm.customer_key, p.created_at
  )
  select coalesce(jsonb_agg(jsonb_build_object('id', q.id, 'customer_key', q.customer_key)
                            order by q.created_at, q.id), '[]'::jsonb)
  into v_staff
  from queued q;

  -- Pauses that ran out by themselves, recorded once each.
  with expired as (
    select s.customer_key, s.paused_until
    from public.chat_sessions s
    where s.paused_until <= now() and s.paused_until > v_give_up_before
      and not exists (select 1 from public.conversation_events e
                      where e.customer_key = s.customer_key and e.kind = 'pause_expired'
                        and e.at >= s.paused_until)
    order by s.paused_until, s.customer_key
    limit p_limit
    for update of s skip locked
  ),
  recorded as (
    insert into public.conversation_events (customer_key, kind, by, reason)
    select x.customer_key, 'pause_expired', 'sweeper', format('paused until %s', x.paused_until)
    from expired x
    order by x.paused_until, x.customer_key
    returning 1
  )
  select count(*) into v_pauses_expired from recorded;

  return jsonb_build_object('turns', v_turns, 'submissions', v_submissions, 'staff_messages', v_staff,
    'pauses_expired', v_pauses_expired,
    'gave_up', jsonb_build_object('messages', v_gave_up_messages, 'submissions', v_gave_up_submissions,
      'staff_messages', v_gave_up_staff));
end;
$$;

-- The dashboard's views -------------------------------------------------------------------------------
-- One customer's whole thread: filter by customer_key, sort by at.
create view public.conversation_transcript with (security_invoker = true) as
select m.customer_key, m.sent_at as at, m.author, m.chat_id, m.body, m.message_type, m.delivery_status, m.state
from public.whatsapp_messages m
union all
-- Staff messages not sent (yet): queued, being sent, refused or failed.
select sm.customer_key, sm.created_at, 'staff', null, sm.body, 'text', null,
       sm.status || coalesce(': ' || sm.status_reason, '')
from public.staff_messages sm
where sm.status <> 'sent';

revoke all on table public.conversation_transcript from public, anon, authenticated;
grant select on table public.conversation_transcript to service_role;

comment on view public.conversation_transcript is
  'Every message of every customer across their chats: the customer''s, the agent''s, staff''s (sent or not) and '
  'the bridge''s templates, with delivery statuses. Filter by customer_key and sort by at.';
comment on column public.conversation_transcript.customer_key is 'The customer (folded phone digits or username id).';
comment on column public.conversation_transcript.at is
  'When it was sent (WhatsApp''s time for the customer''s; when written, for a staff message not sent).';
comment on column public.conversation_transcript.author is 'customer, agent, staff or bridge (templates).';
comment on column public.conversation_transcript.chat_id is 'The Retell chat that answered or produced it, if any.';
comment on column public.conversation_transcript.body is 'The text.';
comment on column public.conversation_transcript.message_type is 'WhatsApp type: text, template, image, …';
comment on column public.conversation_transcript.delivery_status is
  'Sent messages: accepted → sent → delivered → read, or failed.';
comment on column public.conversation_transcript.state is
  'The customer''s messages: pending, in_progress, answered, held (during a pause) or failed. A staff message '
  'not sent: queued, sending, refused or failed, with the reason.';

-- What needs a person: one line per customer and reason.
create view public.needs_attention with (security_invoker = true) as
select s.customer_key, 'paused'::text as reason,
       coalesce(last_pause.at, s.updated_at) as since,
       format('paused until %s%s%s', s.paused_until,
              coalesce(' by ' || last_pause.by, ''), coalesce(': ' || last_pause.reason, '')) as detail
from public.chat_sessions s
left join lateral (
  select e.at, e.by, e.reason from public.conversation_events e
  where e.customer_key = s.customer_key and e.kind = 'paused'
  order by e.at desc, e.id desc limit 1
) last_pause on true
where s.paused_until > now()
union all
-- The agent asked for a person, and neither staff wrote nor the conversation was handed back since.
select e.customer_key, 'human_requested', e.at, e.reason
from (
  select distinct on (e.customer_key) e.customer_key, e.at, e.reason
  from public.conversation_events e
  where e.kind = 'human_requested'
  order by e.customer_key, e.at desc, e.id desc
) e
where not exists (select 1 from public.conversation_events later
                  where later.customer_key = e.customer_key and later.kind in ('staff_message', 'resumed')
                    and later.at >= e.at)
union all
select m.customer_key, 'failed_turn', min(m.updated_at),
       format('%s message(s) failed; last: %s', count(*),
              (array_agg(m.failure_reason order by m.updated_at desc, m.id desc))[1])
from public.whatsapp_messages m
where m.state = 'failed'
group by m.customer_key
union all
select s.customer_key, 'opted_out_recently', s.opted_out_at, 'opted out'
from public.chat_sessions s
where s.opted_out_at > now() - interval '7 days';

revoke all on table public.needs_attention from public, anon, authenticated;
grant select on table public.needs_attention to service_role;

comment on view public.needs_attention is
  'What needs a person, one line per customer and reason: paused with time left, the agent asked for a person, '
  'messages whose turn failed (retry_failed puts them back), opted out in the last week.';
comment on column public.needs_attention.customer_key is 'The customer (folded phone digits or username id).';
comment on column public.needs_attention.reason is
  'paused (a person has taken over, time left), human_requested (the agent asked for a person and nobody has '
  'written or resumed since), failed_turn (messages failed), opted_out_recently (in the last 7 days).';
comment on column public.needs_attention.since is
  'Since when: the pause, the request, the oldest failure, the opt-out.';
comment on column public.needs_attention.detail is
  'Until when and by whom (paused), what the agent said (human_requested), how many and why (failed_turn).';

-- Backend-only, as every other step: the API roles may not call these; service_role may.
revoke execute on function
  public.whatsapp_messages_default_author(),
  public.pause_conversation(text, integer, text, text),
  public.resume_conversation(text, text),
  public.hold_turn(uuid, text),
  public.staff_messages_take_over(),
  public.record_human_request(text, integer, text, text),
  public.claim_staff_message(bigint, integer),
  public.complete_staff_message(bigint, jsonb),
  public.refuse_staff_message(bigint, text, boolean),
  public.release_staff_message(bigint, text, integer),
  public.record_business_echoes(jsonb),
  public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb)
  from public, anon, authenticated;
grant execute on function
  public.whatsapp_messages_default_author(),
  public.pause_conversation(text, integer, text, text),
  public.resume_conversation(text, text),
  public.hold_turn(uuid, text),
  public.staff_messages_take_over(),
  public.record_human_request(text, integer, text, text),
  public.claim_staff_message(bigint, integer),
  public.complete_staff_message(bigint, jsonb),
  public.refuse_staff_message(bigint, text, boolean),
  public.release_staff_message(bigint, text, integer),
  public.record_business_echoes(jsonb),
  public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb)
  to service_role;

comment on function public.pause_conversation(text, integer, text, text) is
  'A person takes over: the agent does not answer the customer for p_minutes (default bridge_settings.pause_default_minutes).';
comment on function public.resume_conversation(text, text) is
  'Hand the conversation back to the agent now; its next turn is told what was said meanwhile.';
comment on function public.hold_turn(uuid, text) is
  'End a paused customer''s turn: its messages are kept (held) for the agent to be told after the pause.';
comment on function public.claim_staff_message(bigint, integer) is
  'Take a staff message to send it (once, however often its webhook is delivered), with the customer''s session.';
comment on function public.record_human_request(text, integer, text, text) is
  'The agent asked for a person: pause the customer and record the request (needs_attention lists it).';
comment on function public.complete_staff_message(bigint, jsonb) is
  'Record a staff message as sent: its outbound message (author staff) and its status.';
comment on function public.refuse_staff_message(bigint, text, boolean) is
  'Mark a staff message refused (outside the 24-hour window) or failed, with the reason.';
comment on function public.release_staff_message(bigint, text, integer) is
  'Put a staff message whose send failed for a passing reason back to queued, for a retry.';
comment on function public.record_business_echoes(jsonb) is
  'Record messages staff sent from the WhatsApp Business app (echoes): as staff messages, once each, pausing the agent.';
comment on function public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb) is
  'Record one webhook delivery: messages, statuses, opt-outs, the business app''s echoes, and what could not be used.';
comment on function public.claim_turn(text, integer, integer) is
  'Claim all waiting messages of a customer for one turn, under a lease, with what the agent was not told (context).';
comment on function public.complete_turn(uuid, text, text, jsonb) is
  'Record the replies of a turn, mark its messages answered and its context told to the agent.';
comment on function public.sweep_stranded_work(integer, integer, integer) is
  'Find the waiting messages, queued submissions and staff messages nothing will take, once each; give up what '
  'waited too long; record pauses that ran out.';

notify pgrst, 'reload schema';
