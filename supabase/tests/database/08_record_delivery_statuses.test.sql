-- record_delivery_statuses: WhatsApp's status webhooks move an outbound message forward
-- (accepted < sent < delivered < read; failed ranks with read), never backwards.
begin;
select plan(26);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);

insert into res values ('in', public.record_inbound_messages($$[
  {"wamid": "wamid.IN1", "customer_key": "525512345678", "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z"}
]$$));
insert into res values ('t1', public.claim_turn('525512345678'));
insert into res values ('done', public.complete_turn((select (r->>'turn_id')::uuid from res where step = 't1'), '525512345678', 'chat_1', $$[
  {"wamid": "wamid.OUT1", "message_type": "text", "body": "uno"},
  {"wamid": "wamid.OUT2", "message_type": "text", "body": "dos"},
  {"wamid": "wamid.OUT3", "message_type": "text", "body": "tres"},
  {"wamid": "wamid.OUT4", "message_type": "text", "body": "cuatro"}
]$$));
select is((select (r->>'recorded')::int from res where step = 'done'), 4, 'sanity: four replies recorded as accepted');

-- Forward moves ----------------------------------------------------------------------------------------
select is(public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT2", "status": "delivered", "at": "2026-03-01T10:00:20Z"},
  {"wamid": "wamid.OUT1", "status": "sent", "at": "2026-03-01T10:00:10Z"}
]$$),
  $$[{"wamid": "wamid.OUT1", "delivery_status": "sent", "applied": true},
     {"wamid": "wamid.OUT2", "delivery_status": "delivered", "applied": true}]$$::jsonb,
  'forward statuses are applied and reported');
select results_eq(
  $$select wamid, delivery_status, delivery_updated_at, delivery_error from public.whatsapp_messages
    where direction = 'outbound' order by wamid$$,
  $$values ('wamid.OUT1', 'sent', '2026-03-01T10:00:10Z'::timestamptz, null::jsonb),
           ('wamid.OUT2', 'delivered', '2026-03-01T10:00:20Z'::timestamptz, null),
           ('wamid.OUT3', 'accepted', null, null),
           ('wamid.OUT4', 'accepted', null, null)$$,
  'the statuses and their times are stored');

-- Backwards and repeated statuses change nothing -------------------------------------------------------
select is(public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT2", "status": "sent", "at": "2026-03-01T10:00:30Z"},
  {"wamid": "wamid.OUT1", "status": "sent", "at": "2026-03-01T10:00:31Z"}
]$$),
  $$[{"wamid": "wamid.OUT1", "delivery_status": "sent", "applied": false},
     {"wamid": "wamid.OUT2", "delivery_status": "delivered", "applied": false}]$$::jsonb,
  'a late or repeated status is not applied and the current status is reported');
select results_eq(
  $$select wamid, delivery_status, delivery_updated_at from public.whatsapp_messages where wamid in ('wamid.OUT1', 'wamid.OUT2') order by wamid$$,
  $$values ('wamid.OUT1', 'sent', '2026-03-01T10:00:10Z'::timestamptz),
           ('wamid.OUT2', 'delivered', '2026-03-01T10:00:20Z'::timestamptz)$$,
  'ignored statuses leave status and time as they were');

-- Several statuses for one message in one batch: the furthest wins -----------------------------------
select is(public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT1", "status": "read", "at": "2026-03-01T10:01:00Z"},
  {"wamid": "wamid.OUT1", "status": "delivered", "at": "2026-03-01T10:00:50Z"}
]$$),
  '[{"wamid": "wamid.OUT1", "delivery_status": "read", "applied": true}]'::jsonb,
  'the furthest of several statuses for one message is applied, reported once');
select is((select delivery_status || ' ' || delivery_updated_at::text from public.whatsapp_messages where wamid = 'wamid.OUT1'),
  'read ' || '2026-03-01T10:01:00Z'::timestamptz::text, 'read is stored with its time');
select is((public.record_delivery_statuses('[{"wamid": "wamid.OUT1", "status": "delivered", "at": "2026-03-01T10:02:00Z"}]'))->0->>'applied',
  'false', 'delivered after read is ignored');

-- Failed stores WhatsApp's errors ----------------------------------------------------------------------
select is(public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT3", "status": "failed", "at": "2026-03-01T10:03:00Z",
   "errors": [{"code": 131047, "title": "Re-engagement message", "message": "More than 24 hours have passed since the recipient last replied."}]}
]$$),
  '[{"wamid": "wamid.OUT3", "delivery_status": "failed", "applied": true}]'::jsonb, 'a failed status is applied');
select is((select delivery_error from public.whatsapp_messages where wamid = 'wamid.OUT3'),
  '[{"code": 131047, "title": "Re-engagement message", "message": "More than 24 hours have passed since the recipient last replied."}]'::jsonb,
  'a failed status stores the errors');
select is((public.record_delivery_statuses('[{"wamid": "wamid.OUT3", "status": "read", "at": "2026-03-01T10:04:00Z"}]'))->0,
  '{"wamid": "wamid.OUT3", "delivery_status": "failed", "applied": false}'::jsonb, 'a failed message does not become read');
select is((select failed_count from public.chat_session_overview where customer_key = '525512345678'), 1::bigint,
  'the overview counts the failed delivery');
select is(public.record_delivery_statuses($$[
  {"wamid": "wamid.OUT4", "status": "sent", "at": "2026-03-01T10:05:00Z", "errors": [{"code": 1}]}
]$$),
  '[{"wamid": "wamid.OUT4", "delivery_status": "sent", "applied": true}]'::jsonb, 'a sent status with errors is applied');
select is((select delivery_error from public.whatsapp_messages where wamid = 'wamid.OUT4'), null,
  'errors are stored only for a failed status');

-- Messages the bridge did not send -------------------------------------------------------------------
select is(public.record_delivery_statuses($$[
  {"wamid": "wamid.UNKNOWN", "status": "delivered", "at": "2026-03-01T10:06:00Z"},
  {"wamid": "wamid.IN1", "status": "read", "at": "2026-03-01T10:06:00Z"}
]$$),
  $$[{"wamid": "wamid.IN1", "delivery_status": null, "applied": false},
     {"wamid": "wamid.UNKNOWN", "delivery_status": null, "applied": false}]$$::jsonb,
  'an unknown wamid and an inbound one are reported with delivery_status null');
select results_eq(
  $$select state, delivery_status, delivery_updated_at from public.whatsapp_messages where wamid = 'wamid.IN1'$$,
  $$values ('answered', null::text, null::timestamptz)$$,
  'an inbound message is not touched by a status');
select is(public.record_delivery_statuses('[]'), '[]'::jsonb, 'an empty batch answers []');

-- Bad input: nothing of the batch is applied ------------------------------------------------------------
select throws_ok($$select public.record_delivery_statuses('[
  {"wamid": "wamid.OUT4", "status": "delivered", "at": "2026-03-01T10:07:00Z"},
  {"wamid": "wamid.OUT2", "status": "deleted", "at": "2026-03-01T10:07:00Z"}]')$$,
  '22023', null, 'an unknown status raises 22023');
select is((select delivery_status from public.whatsapp_messages where wamid = 'wamid.OUT4'), 'sent',
  'the good status of a refused batch is not applied');
select throws_ok($$select public.record_delivery_statuses('[{"wamid": "wamid.OUT4", "status": "accepted", "at": "2026-03-01T10:07:00Z"}]')$$,
  '22023', null, '"accepted" is not a webhook status and raises 22023');
select throws_ok($$select public.record_delivery_statuses('[{"wamid": "wamid.OUT4", "status": "read"}]')$$,
  '22023', null, 'a status without a time raises 22023');
select throws_ok($$select public.record_delivery_statuses('[{"status": "read", "at": "2026-03-01T10:07:00Z"}]')$$,
  '22023', null, 'a status without a wamid raises 22023');
select throws_ok($$select public.record_delivery_statuses('{"wamid": "wamid.OUT4", "status": "read", "at": "2026-03-01T10:07:00Z"}')$$,
  '22023', null, 'an object instead of an array raises 22023');
select throws_ok($$select public.record_delivery_statuses(null)$$, '22023', null, 'null raises 22023');
select results_eq(
  $$select delivery_status, delivery_updated_at from public.whatsapp_messages where wamid = 'wamid.OUT4'$$,
  $$values ('sent', '2026-03-01T10:05:00Z'::timestamptz)$$,
  'refused batches changed nothing');

-- As anon: denied ----------------------------------------------------------------------------------------
reset role;
set local role anon;
select throws_ok($$select public.record_delivery_statuses('[]')$$, '42501', null, 'anon cannot call record_delivery_statuses');
reset role;

select * from finish();
rollback;
