-- record_inbound_messages: a batch of inbound WhatsApp messages is stored once per wamid, the
-- customers' sessions are created or refreshed, and bad input changes nothing.
begin;
select plan(33);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);

-- A first batch: two messages from a Mexican customer (written from 521…, folded to 52…) and one
-- from an Argentine one (549… folded to 54…).
insert into res values ('first', public.record_inbound_messages($$[
  {"wamid": "wamid.MX1", "customer_key": "525512345678", "message_type": "text", "body": "Hola",
   "sent_at": "2026-03-01T10:00:00Z", "wa_id": "5215512345678", "profile_name": "Lupita",
   "payload": {"id": "wamid.MX1", "type": "text", "text": {"body": "Hola"}}},
  {"wamid": "wamid.AR1", "customer_key": "541122334455", "message_type": "text", "body": "Buenas",
   "sent_at": "2026-03-01T10:00:30Z", "wa_id": "5491122334455", "profile_name": "Nico"},
  {"wamid": "wamid.MX2", "customer_key": "525512345678", "message_type": "button", "body": "Sí, me interesa",
   "sent_at": "2026-03-01T10:01:00Z", "wa_id": "5215512345678", "profile_name": "Lupita G."}
]$$));

select is((select r from res where step = 'first'),
  $$[{"wamid": "wamid.MX1", "customer_key": "525512345678", "is_new": true},
     {"wamid": "wamid.AR1", "customer_key": "541122334455", "is_new": true},
     {"wamid": "wamid.MX2", "customer_key": "525512345678", "is_new": true}]$$::jsonb,
  'a new batch answers is_new = true for each message, in input order');
select is((select count(*)::int from public.whatsapp_messages), 3, 'three messages are stored');
select results_eq(
  $$select wamid, direction, state, attempts, delivery_status, turn_id::text from public.whatsapp_messages order by wamid$$,
  $$values ('wamid.AR1', 'inbound', 'pending', 0, null::text, null::text),
           ('wamid.MX1', 'inbound', 'pending', 0, null, null),
           ('wamid.MX2', 'inbound', 'pending', 0, null, null)$$,
  'messages are stored inbound and pending, with no attempts, turn or delivery status');
select is((select payload from public.whatsapp_messages where wamid = 'wamid.MX1'),
  '{"id": "wamid.MX1", "type": "text", "text": {"body": "Hola"}}'::jsonb, 'the payload is kept as delivered');
select is((select body || '|' || message_type || '|' || sent_at::text from public.whatsapp_messages where wamid = 'wamid.MX2'),
  'Sí, me interesa|button|' || '2026-03-01T10:01:00Z'::timestamptz::text, 'body, type and sent_at are kept');
select results_eq(
  $$select customer_key::text, wa_id, whatsapp_profile_name, last_inbound_at, name, current_chat_id, turn_id::text
    from public.chat_sessions order by customer_key$$,
  $$values ('525512345678', '5215512345678', 'Lupita G.', '2026-03-01T10:01:00Z'::timestamptz, null::text, null::text, null::text),
           ('541122334455', '5491122334455', 'Nico', '2026-03-01T10:00:30Z'::timestamptz, null, null, null)$$,
  'a session is created per customer with the newest wa_id, profile name and inbound time');

-- The same webhook delivered again: nothing new.
update public.chat_sessions set last_activity_at = '2026-03-01T10:01:00Z' where customer_key = '525512345678';
insert into res values ('repeat', public.record_inbound_messages($$[
  {"wamid": "wamid.MX1", "customer_key": "525512345678", "message_type": "text", "body": "Hola",
   "sent_at": "2026-03-01T10:00:00Z", "wa_id": "5215512345678", "profile_name": "Lupita"}
]$$));
select is((select r from res where step = 'repeat'),
  '[{"wamid": "wamid.MX1", "customer_key": "525512345678", "is_new": false}]'::jsonb,
  'a repeated delivery answers is_new = false');
select is((select count(*)::int from public.whatsapp_messages), 3, 'a repeated delivery stores nothing');
select is((select last_inbound_at from public.chat_sessions where customer_key = '525512345678'),
  '2026-03-01T10:01:00Z'::timestamptz, 'a repeated (older) delivery does not move last_inbound_at back');
select is((select whatsapp_profile_name from public.chat_sessions where customer_key = '525512345678'), 'Lupita G.',
  'a repeated delivery of an older message does not bring back the older profile name');
insert into res select 'before_dup', to_jsonb(s) from public.chat_sessions s where customer_key = '525512345678';

-- One wamid twice in the same batch.
insert into res values ('dup', public.record_inbound_messages($$[
  {"wamid": "wamid.MX3", "customer_key": "525512345678", "message_type": "text", "body": "¿Precio?", "sent_at": "2026-03-01T10:02:00Z"},
  {"wamid": "wamid.MX3", "customer_key": "525512345678", "message_type": "text", "body": "¿Precio?", "sent_at": "2026-03-01T10:02:00Z"}
]$$));
select is((select r from res where step = 'dup'),
  $$[{"wamid": "wamid.MX3", "customer_key": "525512345678", "is_new": true},
     {"wamid": "wamid.MX3", "customer_key": "525512345678", "is_new": false}]$$::jsonb,
  'within one batch only the first copy of a wamid is new');
select is((select count(*)::int from public.whatsapp_messages where wamid = 'wamid.MX3'), 1,
  'a wamid repeated within one batch is stored once');
select is((select whatsapp_profile_name from public.chat_sessions where customer_key = '525512345678'),
  (select r->>'whatsapp_profile_name' from res where step = 'before_dup'),
  'a batch without a profile name keeps the stored one');
select is((select wa_id from public.chat_sessions where customer_key = '525512345678'), '5215512345678',
  'a batch without a wa_id keeps the stored one');
select is((select last_inbound_at from public.chat_sessions where customer_key = '525512345678'),
  '2026-03-01T10:02:00Z'::timestamptz, 'a newer message moves last_inbound_at forward');
select cmp_ok((select last_activity_at from public.chat_sessions where customer_key = '525512345678'),
  '>', '2026-03-01T10:01:00Z'::timestamptz, 'a new message refreshes last_activity_at');

-- A late message (sent before the newest one) is stored, but does not move last_inbound_at back.
insert into res values ('late', public.record_inbound_messages($$[
  {"wamid": "wamid.MX0", "customer_key": "525512345678", "message_type": "text", "body": "(antes)", "sent_at": "2026-03-01T09:59:00Z"}
]$$));
select is((select r->0->>'is_new' from res where step = 'late'), 'true', 'a late message is new');
select is((select last_inbound_at from public.chat_sessions where customer_key = '525512345678'),
  '2026-03-01T10:02:00Z'::timestamptz, 'a late message does not move last_inbound_at backwards');

-- A username-only sender, keyed by their business-scoped user id.
insert into res values ('bsuid', public.record_inbound_messages($$[
  {"wamid": "wamid.US1", "customer_key": "US.13491208655302741918", "message_type": "text", "body": "hi",
   "sent_at": "2026-03-01T11:00:00Z", "whatsapp_user_id": "US.13491208655302741918", "profile_name": "sam"}
]$$));
select is((select whatsapp_user_id || '|' || whatsapp_profile_name || '|' || coalesce(wa_id, '-')
           from public.chat_sessions where customer_key = 'US.13491208655302741918'),
  'US.13491208655302741918|sam|-', 'a username-only sender gets a session with their user id');

-- A customer who came from the form keeps the form's name and phone.
insert into res values ('form', public.record_form_submission('form-co-1', '573001234567', '+573001234567', 'Camila Rojas', true));
insert into res values ('co', public.record_inbound_messages($$[
  {"wamid": "wamid.CO1", "customer_key": "573001234567", "message_type": "text", "body": "Hola, soy Camila",
   "sent_at": "2026-03-01T12:00:00Z", "wa_id": "573001234567", "profile_name": "Cami"}
]$$));
select is((select name || '|' || phone_e164 || '|' || whatsapp_profile_name || '|' || wa_id || '|' || last_inbound_at::text
           from public.chat_sessions where customer_key = '573001234567'),
  'Camila Rojas|+573001234567|Cami|573001234567|' || '2026-03-01T12:00:00Z'::timestamptz::text,
  'an inbound message on a form lead''s session keeps the form name and sets the WhatsApp fields');

-- Empty and malformed input.
select is(public.record_inbound_messages('[]'), '[]'::jsonb, 'an empty batch answers []');
select throws_ok($$select public.record_inbound_messages('{"wamid": "wamid.X", "customer_key": "525512345678"}')$$,
  '22023', null, 'an object instead of an array raises 22023');
select throws_ok($$select public.record_inbound_messages(null)$$, '22023', null, 'null raises 22023');
select throws_ok($$select public.record_inbound_messages('"wamid.X"')$$, '22023', null, 'a JSON string raises 22023');

-- An invalid customer key in a batch: the whole batch is refused and nothing is left behind.
select throws_ok($$select public.record_inbound_messages('[
  {"wamid": "wamid.OK1", "customer_key": "5215598765432", "message_type": "text", "body": "ok", "sent_at": "2026-03-01T13:00:00Z"},
  {"wamid": "wamid.BAD1", "customer_key": "55-1234", "message_type": "text", "body": "bad", "sent_at": "2026-03-01T13:00:01Z"}
]')$$, '23514', null, 'an invalid customer key raises 23514');
select is((select count(*)::int from public.whatsapp_messages where wamid in ('wamid.OK1', 'wamid.BAD1')), 0,
  'no message of the refused batch was stored');
select is((select count(*)::int from public.chat_sessions where customer_key = '5215598765432'), 0,
  'no session of the refused batch was created');
select throws_ok($$select public.record_inbound_messages('[
  {"wamid": "wamid.MX9", "customer_key": "525512345678", "message_type": "text", "body": "sin hora"}
]')$$, '23502', null, 'a message without sent_at raises 23502');
select is((select count(*)::int from public.whatsapp_messages where wamid = 'wamid.MX9'), 0,
  'the message without sent_at was not stored');
select throws_ok($$select public.record_inbound_messages('[
  {"wamid": "wamid.MX10", "customer_key": "525512345678", "message_type": "Text", "sent_at": "2026-03-01T13:00:00Z"}
]')$$, '23514', null, 'an invalid message type raises 23514');

-- Totals, as the dashboard's view reports them.
select results_eq(
  $$select customer_key::text, inbound_count, outbound_count, waiting_count, last_message_body
    from public.chat_session_overview where customer_key in ('525512345678', '541122334455') order by customer_key$$,
  $$values ('525512345678', 4::bigint, 0::bigint, 4::bigint, '¿Precio?'),
           ('541122334455', 1::bigint, 0::bigint, 1::bigint, 'Buenas')$$,
  'chat_session_overview counts the stored messages and shows the newest');
select is((select customer_name from public.chat_session_overview where customer_key = '573001234567'), 'Camila Rojas',
  'chat_session_overview prefers the form name over the profile name');
select is((select customer_name from public.chat_session_overview where customer_key = '541122334455'), 'Nico',
  'chat_session_overview falls back to the profile name');

reset role;
select * from finish();
rollback;
