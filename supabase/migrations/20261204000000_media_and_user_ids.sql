-- Voice notes and username senders:
-- * save_transcript keeps what a voice note said on its message (`body`), so a retried turn does
--   not transcribe it again and every view shows what was understood;
-- * a customer is one session whichever of their ids WhatsApp writes from: a message keyed by a
--   business-scoped user id goes to the session keyed by it, else to the one carrying it (a form
--   customer who wrote once with both); a phone-keyed message with no session of its own goes to
--   the session of the user id it carries (a username customer who later shares a number)
--   (customer_for, record_inbound_messages);
-- * record_webhook follows WhatsApp's user id changes (p_user_id_changes): the session keeps its
--   key and carries the new id, so replies reach the customer and their messages the same session;
--   each change is kept in conversation_events.
-- Every step locks a customer's session before their messages, as the others do.

comment on column public.whatsapp_messages.body is
  'The text: message body, button or list title, media caption, a voice note''s transcript, or the reply sent.';
comment on column public.chat_sessions.whatsapp_user_id is
  'WhatsApp business-scoped user id, as WhatsApp last reported it (it changes; the session keeps its key).';

-- Messages and changes find a session by the user id it carries.
create index chat_sessions_by_whatsapp_user_id on public.chat_sessions (whatsapp_user_id)
  where whatsapp_user_id is not null;

-- The history staff read gains the user id changes.
alter table public.conversation_events drop constraint conversation_events_kind_check;
alter table public.conversation_events add constraint conversation_events_kind_check check (
  kind in ('paused', 'resumed', 'staff_message', 'human_requested', 'pause_expired', 'user_id_changed'));
comment on column public.conversation_events.kind is
  'paused (a person took over), resumed (handed back to the agent), staff_message (staff sent a message), '
  'human_requested (the agent asked for a person), pause_expired (a pause ran out by itself), '
  'user_id_changed (WhatsApp changed the customer''s business-scoped user id; reason: from and to).';

-- save_transcript: the transcript of voice note p_wamid (an inbound `audio` message) as its body,
-- cut to 10000 characters, only while turn p_turn_id holds it (a turn that lost its lease saves
-- nothing). Returns whether it was saved.
create function public.save_transcript(p_turn_id uuid, p_wamid text, p_transcript text)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if p_transcript is null then
    raise exception 'p_transcript is required' using errcode = '22023';
  end if;
  perform 1 from public.chat_sessions where turn_id = p_turn_id for update;
  update public.whatsapp_messages set body = left(p_transcript, 10000), updated_at = now()
  where wamid = p_wamid and direction = 'inbound' and message_type = 'audio'
    and state = 'in_progress' and turn_id = p_turn_id;
  return found;
end;
$$;

-- customer_for: the session a sender belongs to, if they have one under another key. p_customer_key
-- is the key read from the sender (folded phone digits, or a user id when there is no phone);
-- p_whatsapp_user_id the user id the sender carries. A user-id key: the session keyed by it, else
-- the one carrying it. A phone key with no session of its own and a user id: the session keyed by
-- that id, else the one carrying it. Otherwise (or when none is found) null: the key itself.
-- When several sessions carry an id, the one the customer last wrote to.
create function public.customer_for(p_customer_key text, p_whatsapp_user_id text)
returns text
language sql
stable
set search_path = ''
as $$
  select case
    when p_customer_key !~ '^[0-9]+$' then coalesce(
      (select s.customer_key::text from public.chat_sessions s where s.customer_key = p_customer_key),
      (select s.customer_key::text from public.chat_sessions s
       where s.whatsapp_user_id = p_customer_key
       order by s.last_inbound_at desc nulls last, s.customer_key limit 1))
    when p_whatsapp_user_id is not null
         and not exists (select 1 from public.chat_sessions s where s.customer_key = p_customer_key) then
      (select s.customer_key::text from public.chat_sessions s
       where s.customer_key = p_whatsapp_user_id or s.whatsapp_user_id = p_whatsapp_user_id
       order by s.customer_key = p_whatsapp_user_id desc, s.last_inbound_at desc nulls last, s.customer_key
       limit 1)
  end;
$$;

-- record_inbound_messages: as in 20261125000100_conversation_steps, and each message is recorded
-- under the session its sender belongs to (customer_for); within one batch, a user-id message
-- with no session yet follows a phone message carrying that id. The returned customer_key is the
-- session's, which the webhook queues the turn by.
-- p_messages: [{wamid, customer_key, message_type, sent_at, body?, payload?, wa_id?,
--               whatsapp_user_id?, profile_name?}]
-- Returns [{wamid, customer_key, is_new}] in input order; is_new is false for a repeated delivery.
create or replace function public.record_inbound_messages(p_messages jsonb)
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
  with given as (
    select e.ord, m.wamid, m.customer_key as sender_key, m.message_type, m.sent_at, m.body, m.payload,
      m.wa_id, m.profile_name,
      -- a user-id key is the user id the sender carries
      coalesce(m.whatsapp_user_id, case when m.customer_key !~ '^[0-9]+$' then m.customer_key end)
        as whatsapp_user_id,
      row_number() over (partition by m.wamid order by e.ord) = 1 as first_of_wamid
    from jsonb_array_elements(p_messages) with ordinality as e(message, ord)
    cross join lateral jsonb_to_record(e.message) as m(
      wamid text, customer_key text, message_type text, sent_at timestamptz, body text,
      payload jsonb, wa_id text, whatsapp_user_id text, profile_name text)
  ),
  found_session as (
    select g.*, public.customer_for(g.sender_key, g.whatsapp_user_id) as session_key from given g
  ),
  incoming as (
    select f.ord, f.wamid, f.message_type, f.sent_at, f.body, f.payload, f.wa_id, f.whatsapp_user_id,
      f.profile_name, f.first_of_wamid,
      coalesce(f.session_key,
        -- a user-id sender new to us, whose phone message in this batch carries the id
        case when f.sender_key !~ '^[0-9]+$' then (
          select coalesce(p.session_key, p.sender_key) from found_session p
          where p.sender_key ~ '^[0-9]+$' and p.whatsapp_user_id = f.sender_key
          order by p.sent_at desc, p.ord limit 1) end,
        f.sender_key) as customer_key
    from found_session f
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
           -- a repeated delivery answers the session its message was recorded under
           'customer_key', coalesce(
             (select w.customer_key::text from public.whatsapp_messages w where w.wamid = i.wamid),
             i.customer_key),
           'is_new', i.first_of_wamid and exists (select 1 from inserted n where n.wamid = i.wamid))
         order by i.ord), '[]'::jsonb)
  into v_result
  from incoming i;

  return v_result;
end;
$$;

-- record_webhook, with WhatsApp's user id changes -----------------------------------------------------
-- The argument list changes, so the five-argument function is dropped: two overloads would leave
-- PostgREST unable to choose between them for a call that names only the first five.
drop function public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb);

-- record_webhook: everything one webhook delivery carries, in one transaction: WhatsApp's user id
-- changes (first, so that a message from the new id in the same delivery finds its session),
-- inbound messages (once per wamid), the business app's echoes, delivery statuses, opt-outs (a
-- user id's opt-out reaches the session carrying it), and what could not be used.
-- p_user_id_changes: [{previous_user_id, user_id, wa_id?, at?}]: each session keyed by or
-- carrying previous_user_id carries user_id from now on (and wa_id, the new number, when given);
-- a change already made changes nothing; each change made is kept in conversation_events.
-- Returns {messages: [{wamid, customer_key, is_new, waiting}], statuses: [...],
-- opt_outs: [{customer_key, changed}], echoes: [{wamid, customer_key, is_new}],
-- user_id_changes: [{previous_user_id, user_id, customer_keys}]} (customer_keys: the sessions changed).
create function public.record_webhook(
  p_messages jsonb default '[]'::jsonb,
  p_statuses jsonb default '[]'::jsonb,
  p_unprocessed jsonb default '[]'::jsonb,
  p_opt_outs jsonb default '[]'::jsonb,
  p_echoes jsonb default '[]'::jsonb,
  p_user_id_changes jsonb default '[]'::jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_messages jsonb := '[]'::jsonb;
  v_statuses jsonb := '[]'::jsonb;
  v_opt_outs jsonb := '[]'::jsonb;
  v_opt_outs_found jsonb;
  v_echoes jsonb := '[]'::jsonb;
  v_changes jsonb := '[]'::jsonb;
  v_change record;
  v_changed jsonb;
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
  if p_user_id_changes is not null and jsonb_typeof(p_user_id_changes) <> 'array' then
    raise exception 'p_user_id_changes must be a JSON array' using errcode = '22023';
  end if;
  if jsonb_array_length(coalesce(p_user_id_changes, '[]'::jsonb)) > 0 then
    if exists (select 1 from jsonb_to_recordset(p_user_id_changes) as c(previous_user_id text, user_id text)
               where c.previous_user_id is null or c.user_id is null) then
      raise exception 'each user id change needs a previous_user_id and a user_id' using errcode = '22023';
    end if;
    -- In the order WhatsApp made them, so a chain of changes ends at the newest id.
    for v_change in
      select c.* from jsonb_array_elements(p_user_id_changes) with ordinality as e(change, ord)
      cross join lateral jsonb_to_record(e.change) as c(previous_user_id text, user_id text, wa_id text, at timestamptz)
      order by c.at nulls last, e.ord
    loop
      -- Sessions in a fixed order, locked before they change, as every step does.
      perform 1 from public.chat_sessions s
      where (s.customer_key = v_change.previous_user_id or s.whatsapp_user_id = v_change.previous_user_id)
      order by s.customer_key
      for update of s;
      with changed as (
        update public.chat_sessions s set
          whatsapp_user_id = v_change.user_id,
          wa_id = coalesce(v_change.wa_id, s.wa_id),
          last_activity_at = now(),
          updated_at = now()
        where (s.customer_key = v_change.previous_user_id or s.whatsapp_user_id = v_change.previous_user_id)
          and s.whatsapp_user_id is distinct from v_change.user_id
        returning s.customer_key
      ),
      recorded as (
        insert into public.conversation_events (customer_key, kind, at, by, reason)
        select c.customer_key, 'user_id_changed', coalesce(v_change.at, now()), 'WhatsApp',
          left(format('from %s to %s', v_change.previous_user_id, v_change.user_id), 2000)
        from changed c
        returning customer_key
      )
      select coalesce(jsonb_agg(r.customer_key order by r.customer_key), '[]'::jsonb) into v_changed from recorded r;
      v_changes := v_changes || jsonb_build_object('previous_user_id', v_change.previous_user_id,
        'user_id', v_change.user_id, 'customer_keys', v_changed);
    end loop;
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
    -- Each opt-out under the session its user belongs to, as their messages are.
    select jsonb_agg(jsonb_build_object(
             'customer_key', coalesce(public.customer_for(o.customer_key, coalesce(o.whatsapp_user_id,
                               case when o.customer_key !~ '^[0-9]+$' then o.customer_key end)), o.customer_key),
             'wa_id', o.wa_id, 'whatsapp_user_id', o.whatsapp_user_id))
    into v_opt_outs_found
    from jsonb_to_recordset(p_opt_outs) as o(customer_key text, wa_id text, whatsapp_user_id text);
    insert into public.chat_sessions (customer_key, wa_id, whatsapp_user_id)
    select distinct on (o.customer_key) o.customer_key, o.wa_id, o.whatsapp_user_id
    from jsonb_to_recordset(v_opt_outs_found) as o(customer_key text, wa_id text, whatsapp_user_id text)
    order by o.customer_key
    on conflict (customer_key) do nothing;
    for v_customer_key in
      select distinct o.customer_key from jsonb_to_recordset(v_opt_outs_found) as o(customer_key text) order by 1
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
    'echoes', v_echoes, 'user_id_changes', v_changes);
end;
$$;

-- Backend-only, as every other step: the API roles may not call these; service_role may.
revoke execute on function
  public.save_transcript(uuid, text, text),
  public.customer_for(text, text),
  public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb, jsonb)
  from public, anon, authenticated;
grant execute on function
  public.save_transcript(uuid, text, text),
  public.customer_for(text, text),
  public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb, jsonb)
  to service_role;

comment on function public.save_transcript(uuid, text, text) is
  'Keep a voice note''s transcript as its body, while the turn that transcribed it holds it.';
comment on function public.customer_for(text, text) is
  'The session a sender belongs to under another key (their user id''s, or the one carrying it); null: their own key.';
comment on function public.record_inbound_messages(jsonb) is
  'Store inbound WhatsApp messages once per wamid, each under its sender''s session; says which are new.';
comment on function public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb, jsonb) is
  'Record one webhook delivery: user id changes, messages, statuses, opt-outs, the business app''s echoes, and what '
  'could not be used.';

notify pgrst, 'reload schema';
