-- record_webhook: one webhook delivery in one transaction (messages, statuses, unusable parts).
begin;
select plan(12);

delete from public.chat_sessions;
delete from public.unprocessed_webhook_events;
set local role service_role;

create temporary table res (step text primary key, r jsonb) on commit drop;

insert into res values ('first', public.record_webhook(
  $$[{"wamid": "wamid.W1", "customer_key": "525512345678", "message_type": "text", "body": "hola",
      "sent_at": "2026-03-01T10:00:00Z", "wa_id": "5215512345678"},
     {"wamid": "wamid.W2", "customer_key": "541122334455", "message_type": "text", "body": "buenas",
      "sent_at": "2026-03-01T10:00:01Z"}]$$,
  '[]',
  $$[{"reason": "a change of field account_update", "payload": {"field": "account_update"}}]$$));

select is((select r->'messages'->0->>'is_new' from res where step = 'first'), 'true', 'a new message is new');
select is((select r->'messages'->0->>'waiting' from res where step = 'first'), 'true', 'and waits for a turn');
select is(jsonb_array_length((select r->'messages' from res where step = 'first')), 2, 'every message is reported');
select is((select count(*)::int from public.unprocessed_webhook_events where reason = 'a change of field account_update'), 1,
  'what could not be used is kept for inspection');

-- The same delivery again, before any turn ran: not new, still waiting (so it is queued again).
insert into res values ('again', public.record_webhook(
  $$[{"wamid": "wamid.W1", "customer_key": "525512345678", "message_type": "text", "body": "hola",
      "sent_at": "2026-03-01T10:00:00Z"}]$$, '[]', '[]'));
select is((select r->'messages'->0->>'is_new' from res where step = 'again'), 'false', 'a repeated delivery is not new');
select is((select r->'messages'->0->>'waiting' from res where step = 'again'), 'true', 'but still waits: its turn may never have been queued');
select is((select count(*)::int from public.whatsapp_messages where wamid = 'wamid.W1'), 1, 'recorded once');

-- Once a turn answered it, a repeat neither is new nor waits.
insert into res values ('turn', public.claim_turn('525512345678'));
select public.complete_turn((select (r->>'turn_id')::uuid from res where step = 'turn'), '525512345678', 'chat_w', '[{"wamid": "wamid.WOUT", "message_type": "text", "body": "¡Hola!"}]');
insert into res values ('late', public.record_webhook(
  $$[{"wamid": "wamid.W1", "customer_key": "525512345678", "message_type": "text", "body": "hola",
      "sent_at": "2026-03-01T10:00:00Z"}]$$,
  $$[{"wamid": "wamid.WOUT", "status": "delivered", "at": "2026-03-01T10:01:00Z"}]$$, '[]'));
select is((select r->'messages'->0->>'waiting' from res where step = 'late'), 'false', 'an answered message does not wait');
select is((select r->'statuses'->0->>'applied' from res where step = 'late'), 'true', 'statuses are applied in the same call');
select is((select delivery_status from public.whatsapp_messages where wamid = 'wamid.WOUT'), 'delivered', 'the status is stored');

-- A bad part fails the whole delivery: nothing half-written.
select throws_ok($$select public.record_webhook(
  '[{"wamid": "wamid.W9", "customer_key": "not a key", "message_type": "text", "sent_at": "2026-03-01T10:00:00Z"}]',
  '[]', '[{"reason": "x", "payload": null}]')$$, '23514', null, 'an invalid customer key refuses the delivery');
select is((select count(*)::int from public.unprocessed_webhook_events where reason = 'x'), 0, 'and nothing of it is kept');

select * from finish();
rollback;
