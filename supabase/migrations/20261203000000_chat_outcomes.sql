-- Retell tells us how each chat went (its chat webhooks):
-- * record_chat_event: `chat_ended` keeps when and why Retell ended a chat on its chat_history row
--   and marks the session's chat ended when it is the current one (so the next customer message
--   carries over at once); `chat_analyzed` keeps Retell's analysis (summary, sentiment, success,
--   the business's own fields) once, and counts the chat ended too (it may come first);
--   duplicates and unknown chats change nothing;
-- * outcome_for_hook: what the outcome hook posts for an analysed chat;
-- * conversation_outcomes lists chats with their analysis, for reporting; chat_session_overview
--   gains each customer's latest outcome.
-- Every step locks a customer's session before their chats, as the others do.

-- What Retell said of each chat ------------------------------------------------------------------------
alter table public.chat_history
  add column retell_ended_at      timestamptz,
  add column disconnection_reason text check (length(disconnection_reason) <= 500),
  add column analyzed_at          timestamptz,
  add column summary              text check (length(summary) <= 20000),
  add column user_sentiment       text check (length(user_sentiment) <= 100),
  add column chat_successful      boolean,
  add column custom_analysis      jsonb;

comment on column public.chat_history.ended_at is
  'When a newer chat replaced it; empty for the current chat (Retell''s own end is retell_ended_at).';
comment on column public.chat_history.retell_ended_at is
  'When Retell ended the chat (its chat_ended or chat_analyzed webhook: the chat''s end_timestamp, else when told).';
comment on column public.chat_history.disconnection_reason is
  'Why Retell ended the chat, as it said (its disconnection_reason: for example inactivity after the silence timeout).';
comment on column public.chat_history.analyzed_at is 'When Retell''s post-chat analysis arrived (chat_analyzed); empty until then.';
comment on column public.chat_history.summary is 'Retell''s summary of the chat (chat_summary).';
comment on column public.chat_history.user_sentiment is 'The customer''s sentiment, as Retell judged it: Positive, Negative, Neutral or Unknown.';
comment on column public.chat_history.chat_successful is 'Whether the chat achieved what the agent was for, as Retell judged it.';
comment on column public.chat_history.custom_analysis is
  'The business''s own fields Retell extracted (custom_analysis_data: the agent''s post-chat analysis settings).';
comment on column public.chat_sessions.chat_status is
  'Retell''s status of the current chat: ongoing, ended (Retell ended it: its webhook, or a completion refused) or error.';

-- The latest outcome per customer, for the overview.
create index chat_history_analyzed on public.chat_history (customer_key, analyzed_at desc)
  where analyzed_at is not null;

-- record_chat_event: one of Retell's chat webhooks about p_chat_id.
-- p_event: chat_started (nothing to record), chat_ended or chat_analyzed; p_ended_at: when the
-- chat ended (null: now); p_reason: Retell's disconnection_reason; p_analysis: Retell's
-- chat_analysis {chat_summary, user_sentiment, chat_successful, custom_analysis_data}
-- (chat_analyzed only; null reads as an empty analysis).
-- The end and the analysis are each kept once (a repeat, or an analysis before its end, leaves the
-- same row), and the session's chat is marked ended when it is this one and still ongoing.
-- Returns {known, customer_key, first_analysis}: known = false for a chat that is not ours
-- (nothing changed); first_analysis is true only for the call that stored the analysis.
create function public.record_chat_event(
  p_event text,
  p_chat_id text,
  p_ended_at timestamptz default null,
  p_reason text default null,
  p_analysis jsonb default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_customer text;
  v_analysis jsonb;
  v_first boolean := false;
begin
  if p_event is null or p_event not in ('chat_started', 'chat_ended', 'chat_analyzed') then
    raise exception 'p_event must be chat_started, chat_ended or chat_analyzed, got %', p_event using errcode = '22023';
  end if;
  if p_analysis is not null and jsonb_typeof(p_analysis) not in ('object', 'null') then
    raise exception 'p_analysis must be a JSON object' using errcode = '22023';
  end if;

  select customer_key into v_customer from public.chat_history where chat_id = p_chat_id;
  if not found then
    return jsonb_build_object('known', false, 'customer_key', null, 'first_analysis', false);
  end if;
  perform 1 from public.chat_sessions where customer_key = v_customer for update;
  perform 1 from public.chat_history where chat_id = p_chat_id for update;

  if p_event in ('chat_ended', 'chat_analyzed') then
    update public.chat_history set
      retell_ended_at = coalesce(retell_ended_at, p_ended_at, now()),
      disconnection_reason = coalesce(disconnection_reason, left(nullif(btrim(p_reason), ''), 500))
    where chat_id = p_chat_id
      and (retell_ended_at is null or (disconnection_reason is null and nullif(btrim(p_reason), '') is not null));

    update public.chat_sessions set chat_status = 'ended', updated_at = now()
    where customer_key = v_customer and current_chat_id = p_chat_id and chat_status = 'ongoing';
  end if;

  if p_event = 'chat_analyzed' then
    v_analysis := case when jsonb_typeof(p_analysis) = 'object' then p_analysis else '{}'::jsonb end;
    update public.chat_history set
      analyzed_at = now(),
      summary = left(nullif(btrim(v_analysis ->> 'chat_summary'), ''), 20000),
      user_sentiment = left(nullif(btrim(v_analysis ->> 'user_sentiment'), ''), 100),
      chat_successful = case when jsonb_typeof(v_analysis -> 'chat_successful') = 'boolean'
                             then (v_analysis ->> 'chat_successful')::boolean end,
      custom_analysis = case when jsonb_typeof(v_analysis -> 'custom_analysis_data') is distinct from 'null'
                             then v_analysis -> 'custom_analysis_data' end
    where chat_id = p_chat_id and analyzed_at is null;
    v_first := found;
  end if;

  return jsonb_build_object('known', true, 'customer_key', v_customer, 'first_analysis', v_first);
end;
$$;

-- outcome_for_hook: what the outcome hook posts for an analysed chat: {customer_key, phone, name,
-- chat_id, summary, user_sentiment, chat_successful, custom_analysis, form_fields, analyzed_at,
-- started_at, ended_at, disconnection_reason}. phone is the form's, else the customer key's
-- digits (a WhatsApp number); name the form's, else the WhatsApp profile name; form_fields the
-- other fields of the customer's latest form ({} without one). Null for a chat that is not ours
-- or not analysed yet.
create function public.outcome_for_hook(p_chat_id text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'customer_key', h.customer_key::text,
    'phone', coalesce(s.phone_e164,
                      case when h.customer_key::text ~ '^[0-9]+$' then '+' || h.customer_key::text end),
    'name', coalesce(s.name, s.whatsapp_profile_name),
    'chat_id', h.chat_id,
    'summary', h.summary,
    'user_sentiment', h.user_sentiment,
    'chat_successful', h.chat_successful,
    'custom_analysis', h.custom_analysis,
    'form_fields', coalesce(latest_form.fields, '{}'::jsonb),
    'analyzed_at', h.analyzed_at,
    'started_at', h.started_at,
    'ended_at', coalesce(h.retell_ended_at, h.ended_at),
    'disconnection_reason', h.disconnection_reason)
  from public.chat_history h
  join public.chat_sessions s on s.customer_key = h.customer_key
  left join lateral (
    select f.fields from public.form_submissions f
    where f.customer_key = h.customer_key
    order by f.created_at desc, f.id desc
    limit 1
  ) latest_form on true
  where h.chat_id = p_chat_id and h.analyzed_at is not null;
$$;

-- Reporting: every chat with how it went ---------------------------------------------------------------
create view public.conversation_outcomes with (security_invoker = true) as
select
  h.chat_id,
  h.customer_key,
  h.started_at,
  coalesce(h.retell_ended_at, h.ended_at) as ended_at,
  h.analyzed_at,
  h.summary,
  h.user_sentiment,
  h.chat_successful,
  h.custom_analysis,
  (coalesce(h.retell_ended_at, h.ended_at, h.started_at) at time zone 'UTC')::date as day,
  h.disconnection_reason
from public.chat_history h;

revoke all on table public.conversation_outcomes from public, anon, authenticated;
grant select on table public.conversation_outcomes to service_role;

comment on view public.conversation_outcomes is
  'Every Retell chat with how it went, for reporting: filter analyzed_at is not null, then group by day for the '
  'success rate (avg(chat_successful::int)) or by user_sentiment.';
comment on column public.conversation_outcomes.chat_id is 'Retell chat id.';
comment on column public.conversation_outcomes.customer_key is 'The customer the chat belonged to.';
comment on column public.conversation_outcomes.started_at is 'When the chat was attached to the customer.';
comment on column public.conversation_outcomes.ended_at is
  'When Retell ended the chat, else when a newer chat replaced it; empty while it goes on.';
comment on column public.conversation_outcomes.analyzed_at is 'When Retell''s analysis arrived; empty until then.';
comment on column public.conversation_outcomes.summary is 'Retell''s summary of the chat.';
comment on column public.conversation_outcomes.user_sentiment is 'The customer''s sentiment: Positive, Negative, Neutral or Unknown.';
comment on column public.conversation_outcomes.chat_successful is 'Whether the chat achieved what the agent was for, as Retell judged it.';
comment on column public.conversation_outcomes.custom_analysis is 'The business''s own fields Retell extracted.';
comment on column public.conversation_outcomes.day is 'The day (UTC) the chat ended, else started: for per-day reports.';
comment on column public.conversation_outcomes.disconnection_reason is 'Why Retell ended the chat, as it said.';

-- The overview gains each customer's latest outcome (its columns as they were, then these).
create or replace view public.chat_session_overview with (security_invoker = true) as
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
  s.last_activity_at,
  last_outcome.chat_id as last_outcome_chat_id,
  last_outcome.analyzed_at as last_outcome_at,
  last_outcome.summary as last_summary,
  last_outcome.user_sentiment as last_user_sentiment,
  last_outcome.chat_successful as last_chat_successful
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
) counts
left join lateral (
  select h.chat_id, h.analyzed_at, h.summary, h.user_sentiment, h.chat_successful
  from public.chat_history h
  where h.customer_key = s.customer_key and h.analyzed_at is not null
  order by h.analyzed_at desc, h.started_at desc
  limit 1
) last_outcome on true;

revoke all on table public.chat_session_overview from public, anon, authenticated;
grant select on table public.chat_session_overview to service_role;

comment on column public.chat_session_overview.last_outcome_chat_id is 'The customer''s latest chat Retell analysed.';
comment on column public.chat_session_overview.last_outcome_at is 'When that analysis arrived.';
comment on column public.chat_session_overview.last_summary is 'Retell''s summary of that chat.';
comment on column public.chat_session_overview.last_user_sentiment is 'The customer''s sentiment in that chat.';
comment on column public.chat_session_overview.last_chat_successful is 'Whether that chat achieved what the agent was for.';

-- Backend-only, as every other step: the API roles may not call these; service_role may.
revoke execute on function
  public.record_chat_event(text, text, timestamptz, text, jsonb),
  public.outcome_for_hook(text)
  from public, anon, authenticated;
grant execute on function
  public.record_chat_event(text, text, timestamptz, text, jsonb),
  public.outcome_for_hook(text)
  to service_role;

comment on function public.record_chat_event(text, text, timestamptz, text, jsonb) is
  'Record one of Retell''s chat webhooks: the chat''s end (the session''s chat ended when current) and its analysis, '
  'each once, in any order; nothing for a chat that is not ours.';
comment on function public.outcome_for_hook(text) is
  'What the outcome hook posts for an analysed chat: the customer, the analysis and the form''s fields; null otherwise.';

notify pgrst, 'reload schema';
