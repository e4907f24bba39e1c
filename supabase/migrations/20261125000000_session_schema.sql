-- The bridge's data: one session per customer, every WhatsApp message, every form submission,
-- and every Retell chat a customer has had. Written only by the functions (service_role) through
-- the RPC functions of the next migration; operators read it in the Supabase dashboard.

-- A customer key is the folded digits of a phone number (see shared::domain::CustomerKey), or a
-- WhatsApp business-scoped user id ("US.1349...") for a username-only sender.
create domain public.customer_key as text
  check (value ~ '^[1-9][0-9]{6,14}$' or value ~ '^[A-Z]{2}\.[A-Za-z0-9]{1,64}$');
comment on domain public.customer_key is
  'Folded E.164 digits (521/549 prefixes folded, Brazilian mobiles with the 9) or a WhatsApp business-scoped user id.';

create table public.chat_sessions (
  customer_key           public.customer_key primary key,
  phone_e164             text check (phone_e164 ~ '^\+[1-9][0-9]{6,14}$'),
  wa_id                  text check (wa_id ~ '^[0-9]{6,20}$'),
  whatsapp_user_id       text check (length(whatsapp_user_id) between 1 and 128),
  name                   text check (length(name) between 1 and 200),
  whatsapp_profile_name  text check (length(whatsapp_profile_name) <= 200),
  current_chat_id        text check (length(current_chat_id) between 1 and 200),
  chat_status            text check (chat_status in ('ongoing', 'ended', 'error')),
  chat_started_at        timestamptz,
  last_inbound_at        timestamptz,
  last_outbound_at       timestamptz,
  last_activity_at       timestamptz not null default now(),
  paused_until           timestamptz,
  opted_out_at           timestamptz,
  window_closed_at       timestamptz,
  turn_id                uuid,
  turn_lease_expires_at  timestamptz,
  turn_chat_id           text,
  turn_replies           jsonb check (jsonb_typeof(turn_replies) = 'array'),
  turn_replies_sent      integer not null default 0 check (turn_replies_sent >= 0),
  created_at             timestamptz not null default now(),
  updated_at             timestamptz not null default now(),
  -- A chat id always comes with its status and start; a turn always with its lease.
  constraint chat_sessions_chat_complete check (
    (current_chat_id is null) = (chat_status is null)
    and (current_chat_id is null) = (chat_started_at is null)),
  constraint chat_sessions_turn_complete check ((turn_id is null) = (turn_lease_expires_at is null)),
  -- The agent's answer belongs to the running turn and the chat that gave it.
  constraint chat_sessions_turn_replies_have_turn check (
    turn_replies is null or (turn_id is not null and turn_chat_id is not null)),
  constraint chat_sessions_turn_replies_sent_within check (
    turn_replies_sent <= coalesce(jsonb_array_length(turn_replies), 0))
);
create unique index chat_sessions_turn_id_key on public.chat_sessions (turn_id);

comment on table public.chat_sessions is
  'One row per customer: the Retell chat their WhatsApp conversation continues, and who may answer them.';
comment on column public.chat_sessions.customer_key is
  'Who the customer is: E.164 digits with WhatsApp''s Mexican/Argentine/Brazilian alternates folded, or a username-only sender''s id.';
comment on column public.chat_sessions.phone_e164 is 'The phone number as entered on the form, in E.164 (+525512345678).';
comment on column public.chat_sessions.wa_id is 'The last WhatsApp id this customer wrote from (may be 521…/549…).';
comment on column public.chat_sessions.whatsapp_user_id is 'WhatsApp business-scoped user id, for customers with a username.';
comment on column public.chat_sessions.name is 'The name given on the form; the agent greets the customer with it.';
comment on column public.chat_sessions.whatsapp_profile_name is 'The WhatsApp profile name the customer''s messages carry.';
comment on column public.chat_sessions.current_chat_id is 'The Retell chat every new message continues. Earlier chats are in chat_history.';
comment on column public.chat_sessions.chat_status is 'Retell''s status of the current chat: ongoing, ended or error.';
comment on column public.chat_sessions.chat_started_at is 'When the current chat was attached.';
comment on column public.chat_sessions.last_inbound_at is 'When the customer last wrote: free text may be sent for 24 hours after it.';
comment on column public.chat_sessions.last_outbound_at is 'When the bridge last sent the customer a message.';
comment on column public.chat_sessions.last_activity_at is 'Last time anything happened in this conversation.';
comment on column public.chat_sessions.paused_until is 'A person took over: until then messages are stored and not answered by the agent.';
comment on column public.chat_sessions.opted_out_at is 'When the customer asked not to be contacted (STOP/BAJA); empty once they opt in again.';
comment on column public.chat_sessions.window_closed_at is
  'WhatsApp refused free text (131047) at this time: until the customer writes again, replies go as the template.';
comment on column public.chat_sessions.turn_chat_id is 'The chat that answered the running turn.';
comment on column public.chat_sessions.turn_replies is
  'The agent''s answer to the running turn, kept until sent, so a retried turn resends it instead of asking the agent again.';
comment on column public.chat_sessions.turn_replies_sent is 'How many of turn_replies have been sent.';
comment on column public.chat_sessions.turn_id is 'The turn a worker is running for this customer now, if any.';
comment on column public.chat_sessions.turn_lease_expires_at is 'After this the running turn is presumed dead and its messages are claimed again.';
comment on column public.chat_sessions.created_at is 'When the customer was first seen.';
comment on column public.chat_sessions.updated_at is 'When this row last changed.';

create table public.chat_history (
  chat_id      text primary key check (length(chat_id) between 1 and 200),
  customer_key public.customer_key not null references public.chat_sessions (customer_key) on delete cascade,
  started_at   timestamptz not null default now(),
  ended_at     timestamptz,
  end_reason   text check (length(end_reason) <= 500),
  check (ended_at is null or ended_at >= started_at)
);
-- At most one current (not ended) chat per customer.
create unique index chat_history_one_current_per_customer on public.chat_history (customer_key) where ended_at is null;

comment on table public.chat_history is 'Every Retell chat each customer has had, so a customer can be followed across chat rotations.';
comment on column public.chat_history.chat_id is 'Retell chat id.';
comment on column public.chat_history.customer_key is 'The customer the chat belonged to.';
comment on column public.chat_history.started_at is 'When the chat was attached to the customer.';
comment on column public.chat_history.ended_at is 'When a newer chat replaced it; empty for the current chat.';
comment on column public.chat_history.end_reason is 'Why it was replaced (for example: Retell ended it after silence).';

create table public.whatsapp_messages (
  id                  bigint generated always as identity primary key,
  wamid               text not null unique check (length(wamid) between 1 and 256),
  customer_key        public.customer_key not null references public.chat_sessions (customer_key) on delete cascade,
  direction           text not null check (direction in ('inbound', 'outbound')),
  message_type        text not null check (message_type ~ '^[a-z_]{1,40}$'),
  body                text,
  payload             jsonb,
  sent_at             timestamptz not null,
  state               text,
  failure_reason      text check (length(failure_reason) <= 2000),
  attempts            integer not null default 0 check (attempts >= 0),
  chat_id             text,
  turn_id             uuid,
  delivery_status     text,
  delivery_updated_at timestamptz,
  delivery_error      jsonb,
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now(),
  -- Inbound messages move through a turn; outbound ones through WhatsApp's delivery statuses.
  constraint whatsapp_messages_state_by_direction check (
    (direction = 'inbound' and state is not null and delivery_status is null
        and state in ('pending', 'in_progress', 'answered', 'failed'))
    or (direction = 'outbound' and state is null and delivery_status is not null
        and delivery_status in ('accepted', 'sent', 'delivered', 'read', 'failed'))),
  constraint whatsapp_messages_in_progress_has_turn check (state is distinct from 'in_progress' or turn_id is not null),
  constraint whatsapp_messages_failed_has_reason check (state is distinct from 'failed' or failure_reason is not null)
);
create index whatsapp_messages_waiting on public.whatsapp_messages (customer_key, sent_at, id)
  where state in ('pending', 'in_progress');
create index whatsapp_messages_by_customer on public.whatsapp_messages (customer_key, sent_at desc, id desc);
create index whatsapp_messages_by_turn on public.whatsapp_messages (turn_id) where turn_id is not null;

comment on table public.whatsapp_messages is 'Every WhatsApp message the bridge received or sent, once each (unique wamid).';
comment on column public.whatsapp_messages.id is 'Row number, in order of recording.';
comment on column public.whatsapp_messages.wamid is 'WhatsApp message id; a repeated webhook delivery of the same message is recorded once.';
comment on column public.whatsapp_messages.customer_key is 'The customer who sent or received it.';
comment on column public.whatsapp_messages.direction is 'inbound (from the customer) or outbound (from the bridge).';
comment on column public.whatsapp_messages.message_type is 'WhatsApp type: text, button, interactive, image, template, …';
comment on column public.whatsapp_messages.body is 'The text: message body, button or list title, media caption, or the reply sent.';
comment on column public.whatsapp_messages.payload is 'The message as WhatsApp delivered it (inbound) or as it was sent (outbound).';
comment on column public.whatsapp_messages.sent_at is 'WhatsApp''s timestamp (inbound) or when the bridge sent it (outbound).';
comment on column public.whatsapp_messages.state is 'Inbound only: pending → in_progress → answered, or failed (see failure_reason).';
comment on column public.whatsapp_messages.failure_reason is 'Why the last turn with this message failed.';
comment on column public.whatsapp_messages.attempts is 'How many turns have claimed this message.';
comment on column public.whatsapp_messages.chat_id is 'The Retell chat that answered (inbound) or produced (outbound) it.';
comment on column public.whatsapp_messages.turn_id is 'The turn that claimed (inbound) or sent (outbound) it.';
comment on column public.whatsapp_messages.delivery_status is 'Outbound only: accepted → sent → delivered → read, or failed. Never moves backwards.';
comment on column public.whatsapp_messages.delivery_updated_at is 'WhatsApp''s timestamp of the latest delivery status.';
comment on column public.whatsapp_messages.delivery_error is 'WhatsApp''s errors for a failed delivery (code 131047: the 24-hour window had closed).';
comment on column public.whatsapp_messages.created_at is 'When the bridge recorded it.';
comment on column public.whatsapp_messages.updated_at is 'When this row last changed.';

create table public.form_submissions (
  id              uuid primary key default gen_random_uuid(),
  idempotency_key text not null unique check (length(idempotency_key) between 1 and 200),
  customer_key    public.customer_key not null references public.chat_sessions (customer_key) on delete cascade,
  phone_e164      text not null check (phone_e164 ~ '^\+[1-9][0-9]{6,14}$'),
  name            text not null check (length(name) between 1 and 200),
  consent         boolean not null check (consent),
  fields          jsonb not null default '{}' check (jsonb_typeof(fields) = 'object'),
  status          text not null default 'queued' check (status in ('queued', 'started', 'failed')),
  chat_id         text,
  failure_reason  text check (length(failure_reason) <= 2000),
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint form_submissions_failed_has_reason check (status <> 'failed' or failure_reason is not null)
);
create index form_submissions_by_customer on public.form_submissions (customer_key, created_at desc);

comment on table public.form_submissions is 'Each accepted web-form submission: the lead the agent reaches out to.';
comment on column public.form_submissions.id is 'Submission id returned to the form.';
comment on column public.form_submissions.idempotency_key is 'The Idempotency-Key header (or a hash of the body): a repeated submission is recorded once.';
comment on column public.form_submissions.customer_key is 'The customer this submission is for.';
comment on column public.form_submissions.phone_e164 is 'The phone number as entered, in E.164.';
comment on column public.form_submissions.name is 'The name as entered.';
comment on column public.form_submissions.consent is 'The customer agreed to be contacted on WhatsApp (required).';
comment on column public.form_submissions.fields is 'Other form fields, passed to the agent as dynamic variables.';
comment on column public.form_submissions.status is 'queued → started (chat created, template sent), or failed (see failure_reason).';
comment on column public.form_submissions.chat_id is 'The Retell chat started for it.';
comment on column public.form_submissions.failure_reason is 'Why the outreach failed.';
comment on column public.form_submissions.created_at is 'When it was received.';
comment on column public.form_submissions.updated_at is 'When this row last changed.';

create table public.unprocessed_webhook_events (
  id          bigint generated always as identity primary key,
  received_at timestamptz not null default now(),
  reason      text not null check (length(reason) between 1 and 2000),
  payload     jsonb not null
);
comment on table public.unprocessed_webhook_events is
  'Signed webhook content the bridge could not use (unreadable, unknown sender, other fields): kept for inspection, answered 200 so Meta does not retry for days.';
comment on column public.unprocessed_webhook_events.id is 'Row number, in order of arrival.';
comment on column public.unprocessed_webhook_events.received_at is 'When it arrived.';
comment on column public.unprocessed_webhook_events.reason is 'Why it was not used.';
comment on column public.unprocessed_webhook_events.payload is 'The part of the payload concerned, as Meta sent it.';

-- Backend-only: RLS on with no policy, and none of Supabase's default grants to the API roles.
alter table public.chat_sessions enable row level security;
alter table public.chat_history enable row level security;
alter table public.whatsapp_messages enable row level security;
alter table public.form_submissions enable row level security;
alter table public.unprocessed_webhook_events enable row level security;
revoke all on table public.chat_sessions, public.chat_history, public.whatsapp_messages, public.form_submissions,
  public.unprocessed_webhook_events from public, anon, authenticated;
grant select, insert, update, delete on table public.chat_sessions, public.chat_history, public.whatsapp_messages,
  public.form_submissions, public.unprocessed_webhook_events to service_role;
revoke all on sequence public.whatsapp_messages_id_seq, public.unprocessed_webhook_events_id_seq
  from public, anon, authenticated;
grant usage, select on sequence public.whatsapp_messages_id_seq, public.unprocessed_webhook_events_id_seq
  to service_role;

-- The dashboard's view of each conversation. security_invoker makes it obey the tables' RLS.
create view public.chat_session_overview with (security_invoker = true) as
select
  s.customer_key,
  coalesce(s.name, s.whatsapp_profile_name) as customer_name,
  s.phone_e164,
  s.current_chat_id,
  s.chat_status,
  last_message.direction as last_message_direction,
  last_message.body as last_message_body,
  last_message.sent_at as last_message_at,
  counts.inbound_count,
  counts.outbound_count,
  counts.waiting_count,
  counts.failed_count,
  (s.paused_until is not null and s.paused_until > now()) as paused,
  (s.opted_out_at is not null) as opted_out,
  s.last_inbound_at,
  s.last_activity_at
from public.chat_sessions s
left join lateral (
  select m.direction, m.body, m.sent_at
  from public.whatsapp_messages m
  where m.customer_key = s.customer_key
  order by m.sent_at desc, m.id desc
  limit 1
) last_message on true
cross join lateral (
  select
    count(*) filter (where m.direction = 'inbound') as inbound_count,
    count(*) filter (where m.direction = 'outbound') as outbound_count,
    count(*) filter (where m.state in ('pending', 'in_progress')) as waiting_count,
    count(*) filter (where m.state = 'failed' or m.delivery_status = 'failed') as failed_count
  from public.whatsapp_messages m
  where m.customer_key = s.customer_key
) counts;

revoke all on table public.chat_session_overview from public, anon, authenticated;
grant select on table public.chat_session_overview to service_role;

comment on view public.chat_session_overview is 'One line per customer: who, which chat, the last message, and whether a person or an opt-out holds the agent back.';
comment on column public.chat_session_overview.customer_key is 'Who the customer is (folded phone digits or username id).';
comment on column public.chat_session_overview.customer_name is 'Name from the form, else the WhatsApp profile name.';
comment on column public.chat_session_overview.phone_e164 is 'Phone number from the form.';
comment on column public.chat_session_overview.current_chat_id is 'The Retell chat the conversation continues.';
comment on column public.chat_session_overview.chat_status is 'Retell status of that chat.';
comment on column public.chat_session_overview.last_message_direction is 'Whether the last message came from the customer (inbound) or the bridge (outbound).';
comment on column public.chat_session_overview.last_message_body is 'Text of the last message.';
comment on column public.chat_session_overview.last_message_at is 'When the last message was sent.';
comment on column public.chat_session_overview.inbound_count is 'Messages received from the customer.';
comment on column public.chat_session_overview.outbound_count is 'Messages sent to the customer.';
comment on column public.chat_session_overview.waiting_count is 'Messages from the customer not yet answered.';
comment on column public.chat_session_overview.failed_count is 'Messages whose turn or delivery failed.';
comment on column public.chat_session_overview.paused is 'A person has taken over for now.';
comment on column public.chat_session_overview.opted_out is 'The customer asked not to be contacted.';
comment on column public.chat_session_overview.last_inbound_at is 'When the customer last wrote (the 24-hour window).';
comment on column public.chat_session_overview.last_activity_at is 'Last time anything happened.';

notify pgrst, 'reload schema';
