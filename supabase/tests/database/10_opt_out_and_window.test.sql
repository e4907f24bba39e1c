-- set_opt_out: a customer opts out of the agent's messages (STOP/BAJA) or back in.
-- record_delivery_statuses: a failed delivery with WhatsApp's error 131047 (the 24-hour window had
-- closed) marks the customer's session, so the next reply goes as a template.
begin;
select plan(34);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);

insert into res values ('in1', public.record_inbound_messages($$[
  {"wamid": "wamid.IN1", "customer_key": "525512345678", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"},
  {"wamid": "wamid.AR.IN1", "customer_key": "541122334455", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));

-- Opting out ----------------------------------------------------------------------------------------------
select is(public.set_opt_out('525512345678', true), jsonb_build_object('changed', true, 'opted_out_at', now()),
  'opting out changes the session and answers when');
select is((select opted_out_at from public.chat_sessions where customer_key = '525512345678'), now(),
  'opted_out_at is stored');
select is((select opted_out from public.chat_session_overview where customer_key = '525512345678'), true,
  'the overview shows the opt-out');
update public.chat_sessions set opted_out_at = '2026-03-01T10:30:00Z' where customer_key = '525512345678';
select is(public.set_opt_out('525512345678', true),
  jsonb_build_object('changed', false, 'opted_out_at', '2026-03-01T10:30:00Z'::timestamptz),
  'opting out again changes nothing and answers the first time');
select is((select opted_out_at from public.chat_sessions where customer_key = '525512345678'), '2026-03-01T10:30:00Z'::timestamptz,
  'a repeated opt-out keeps the first opted_out_at');
select is((select opted_out_at from public.chat_sessions where customer_key = '541122334455'), null,
  'another customer is not opted out');

-- Opting back in ------------------------------------------------------------------------------------------
select is(public.set_opt_out('525512345678', false), '{"changed": true, "opted_out_at": null}'::jsonb,
  'opting back in changes the session');
select is((select opted_out_at from public.chat_sessions where customer_key = '525512345678'), null,
  'opted_out_at is cleared');
select is(public.set_opt_out('525512345678', false), '{"changed": false, "opted_out_at": null}'::jsonb,
  'opting in a customer who is not opted out changes nothing');
select is(public.set_opt_out('541122334455', false), '{"changed": false, "opted_out_at": null}'::jsonb,
  'opting in a customer who never opted out changes nothing');

-- Bad arguments -------------------------------------------------------------------------------------------
select throws_ok($$select public.set_opt_out('525500000000', true)$$, 'P0002', null,
  'an unknown customer raises P0002');
select is((select count(*)::int from public.chat_sessions where customer_key = '525500000000'), 0,
  'no session is created for an unknown customer');
select throws_ok($$select public.set_opt_out(null, true)$$, 'P0002', null, 'a null customer raises P0002');
select throws_ok($$select public.set_opt_out('525512345678', null)$$, '22023', null, 'a null flag raises 22023');
select is((select opted_out_at from public.chat_sessions where customer_key = '525512345678'), null,
  'the refused call changed nothing');

-- Replies to fail ------------------------------------------------------------------------------------------
insert into res values ('t1', public.claim_turn('525512345678'));
insert into res values ('done1', public.complete_turn((select (r->>'turn_id')::uuid from res where step = 't1'), '525512345678', 'chat_1', $$[
  {"wamid": "wamid.OUT1", "message_type": "text", "body": "uno"},
  {"wamid": "wamid.OUT2", "message_type": "text", "body": "dos"},
  {"wamid": "wamid.OUT3", "message_type": "text", "body": "tres"},
  {"wamid": "wamid.OUT4", "message_type": "text", "body": "cuatro"}
]$$));
insert into res values ('t2', public.claim_turn('541122334455'));
insert into res values ('done2', public.complete_turn((select (r->>'turn_id')::uuid from res where step = 't2'), '541122334455', 'chat_ar', $$[
  {"wamid": "wamid.AR.OUT1", "message_type": "text", "body": "uno"}
]$$));
select is((select count(*)::int from public.whatsapp_messages where direction = 'outbound' and delivery_status = 'accepted'), 5,
  'sanity: five replies accepted');

-- A status that is not failed, even carrying 131047, does not close the window.
select is((public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT1", "status": "sent", "at": "2026-03-01T10:01:00Z", "errors": [{"code": 131047}]}
]$$))->0->>'applied', 'true', 'sanity: a sent status is applied');
select is((select window_closed_at from public.chat_sessions where customer_key = '525512345678'), null,
  'a sent status does not close the window');

-- A failed status with another error does not close it.
select is((public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT2", "status": "failed", "at": "2026-03-01T10:02:00Z",
   "errors": [{"code": 131026, "title": "Message undeliverable"}]}
]$$))->0->>'delivery_status', 'failed', 'sanity: a failed status with 131026 is applied');
select is((select window_closed_at from public.chat_sessions where customer_key = '525512345678'), null,
  'a failed status with another code does not close the window');

-- A failed status without errors does not close it either.
select is((public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT3", "status": "failed", "at": "2026-03-01T10:03:00Z"}
]$$))->0->>'applied', 'true', 'sanity: a failed status without errors is applied');
select is((select window_closed_at from public.chat_sessions where customer_key = '525512345678'), null,
  'a failed status without errors does not close the window');

-- 131047 for a wamid the bridge did not send touches no session.
select is((public.record_delivery_statuses($$[
  {"wamid": "wamid.UNKNOWN", "status": "failed", "at": "2026-03-01T10:03:30Z", "errors": [{"code": 131047}]}
]$$))->0->>'applied', 'false', 'sanity: a status for an unknown wamid is not applied');
select is((select count(*)::int from public.chat_sessions where window_closed_at is not null), 0,
  'an unknown wamid''s 131047 closes no window');

-- Failed with 131047 closes the window, for that customer only.
select is(public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT4", "status": "failed", "at": "2026-03-01T10:04:00Z",
   "errors": [{"code": 131047, "title": "Re-engagement message",
               "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]}
]$$),
  '[{"wamid": "wamid.OUT4", "delivery_status": "failed", "applied": true}]'::jsonb, 'a failed 131047 status is applied');
select isnt((select window_closed_at from public.chat_sessions where customer_key = '525512345678'), null,
  'a failed status with 131047 sets window_closed_at');
select is((select window_closed_at <= now() from public.chat_sessions where customer_key = '525512345678'), true,
  'window_closed_at is not in the future');
select is((select window_closed_at from public.chat_sessions where customer_key = '541122334455'), null,
  'another customer''s window stays open');
select is((select updated_at from public.chat_sessions where customer_key = '525512345678'), now(),
  'the session''s updated_at moves with it');

-- 131047 among other errors also closes it.
select is((public.record_delivery_statuses($$[
  {"wamid": "wamid.AR.OUT1", "status": "failed", "at": "2026-03-01T10:05:00Z",
   "errors": [{"code": 131026}, {"code": 131047, "title": "Re-engagement message"}]}
]$$))->0->>'applied', 'true', 'sanity: the Argentine reply fails');
select isnt((select window_closed_at from public.chat_sessions where customer_key = '541122334455'), null,
  '131047 among several errors closes the window');

-- A late 131047 webhook: WhatsApp refused the reply before the customer wrote again, but the status
-- is processed after that message. The customer's newer message opened the window again, so the
-- session must still be within it (window_closed_at before last_inbound_at, as the engine's
-- Session::within_service_window compares them).
insert into res values ('co_in1', public.record_inbound_messages(jsonb_build_array(jsonb_build_object(
  'wamid', 'wamid.CO.IN1', 'customer_key', '573001234567', 'message_type', 'text', 'body', 'Hola',
  'sent_at', now() - interval '30 hours'))));
insert into res values ('co_t1', public.claim_turn('573001234567'));
insert into res values ('co_done1', public.complete_turn((select (r->>'turn_id')::uuid from res where step = 'co_t1'),
  '573001234567', 'chat_co', '[{"wamid": "wamid.CO.OUT1", "message_type": "text", "body": "¿Sigues interesada?"}]'));
insert into res values ('co_in2', public.record_inbound_messages(jsonb_build_array(jsonb_build_object(
  'wamid', 'wamid.CO.IN2', 'customer_key', '573001234567', 'message_type', 'text', 'body', 'Sí, aquí estoy',
  'sent_at', now() - interval '1 minute'))));
select is((public.record_delivery_statuses(jsonb_build_array(jsonb_build_object(
    'wamid', 'wamid.CO.OUT1', 'status', 'failed', 'at', now() - interval '5 minutes',
    'errors', '[{"code": 131047}]'::jsonb))))->0->>'applied', 'true', 'sanity: the late failed status is applied');
select ok((select window_closed_at is null or window_closed_at < last_inbound_at
           from public.chat_sessions where customer_key = '573001234567'),
  'a 131047 failure from before the customer''s latest message does not close the window that message opened');

-- As anon: denied ----------------------------------------------------------------------------------------
reset role;
set local role anon;
select throws_ok($$select public.set_opt_out('525512345678', true)$$, '42501', null, 'anon cannot call set_opt_out');
reset role;

select * from finish();
rollback;
