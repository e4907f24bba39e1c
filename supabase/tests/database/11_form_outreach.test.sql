-- complete_form_submission / fail_form_submission: the outcome of a form's outreach: either the
-- chat it started and the template sent (status started), or the reason it failed (status failed).
-- And none of the RPC functions added for turns, opt-outs and outreach is open to the API roles.
begin;
select plan(31);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);
create temp table s (name text primary key, id uuid);

insert into res values ('mx', public.record_form_submission('idem-mx-0001', '525512345678', '+525512345678', 'Guadalupe', true,
  '{"interes": "Seguro de auto"}'));
insert into s select 'mx', (r->>'submission_id')::uuid from res where step = 'mx';
insert into res values ('co', public.record_form_submission('idem-co-0001', '573001234567', '+573001234567', 'Camila', true));
insert into s select 'co', (r->>'submission_id')::uuid from res where step = 'co';
insert into res values ('ar', public.record_form_submission('idem-ar-0001', '541122334455', '+5491122334455', 'Nicolás', true));
insert into s select 'ar', (r->>'submission_id')::uuid from res where step = 'ar';

-- Completing an outreach ------------------------------------------------------------------------------
select is(public.complete_form_submission((select id from s where name = 'mx'), 'chat_mx_1', $$[
    {"wamid": "wamid.TPL1", "message_type": "template", "body": "¡Hola Guadalupe! Soy Sofía, de Seguros Aurora.",
     "payload": {"name": "bienvenida_cotizacion", "language": {"code": "es_MX"}}}]$$),
  '{"completed": true}'::jsonb, 'a queued submission completes');
select results_eq(
  $$select status, chat_id, failure_reason from public.form_submissions where idempotency_key = 'idem-mx-0001'$$,
  $$values ('started', 'chat_mx_1', null::text)$$,
  'the submission is started with its chat');
select results_eq(
  $$select wamid, customer_key::text, direction, message_type, body, payload, state, delivery_status, chat_id, turn_id
    from public.whatsapp_messages$$,
  $$values ('wamid.TPL1', '525512345678', 'outbound', 'template', '¡Hola Guadalupe! Soy Sofía, de Seguros Aurora.',
            '{"name": "bienvenida_cotizacion", "language": {"code": "es_MX"}}'::jsonb, null::text, 'accepted', 'chat_mx_1', null::uuid)$$,
  'the template is recorded outbound, accepted, with the chat and no turn');
select is((select last_outbound_at from public.chat_sessions where customer_key = '525512345678'), now(),
  'the session records when the bridge last wrote');
select is((select outbound_count from public.chat_session_overview where customer_key = '525512345678'), 1::bigint,
  'the overview counts the template');

-- A repeat (the response was lost) is harmless ------------------------------------------------------------
select is(public.complete_form_submission((select id from s where name = 'mx'), 'chat_mx_2', $$[
    {"wamid": "wamid.TPL1", "message_type": "template", "body": "¡Hola Guadalupe! Soy Sofía, de Seguros Aurora."}]$$),
  '{"completed": false}'::jsonb, 'completing a started submission again answers completed = false');
select is((select count(*)::int from public.whatsapp_messages), 1, 'the repeat records no second template');
select is((select chat_id from public.form_submissions where idempotency_key = 'idem-mx-0001'), 'chat_mx_1',
  'the repeat keeps the first chat');
select is((select payload from public.whatsapp_messages where wamid = 'wamid.TPL1'),
  '{"name": "bienvenida_cotizacion", "language": {"code": "es_MX"}}'::jsonb, 'the repeat keeps the first record');

-- Bad arguments -------------------------------------------------------------------------------------------
select throws_ok(format($$select public.complete_form_submission(%L, 'chat_x', '[]')$$, gen_random_uuid()),
  'P0002', null, 'an unknown submission raises P0002');
select throws_ok(format($$select public.complete_form_submission(%L, 'chat_co_1', '{"wamid": "wamid.TPL2", "message_type": "template"}')$$,
    (select id from s where name = 'co')),
  '22023', null, 'an object instead of an array raises 22023');
select throws_ok(format($$select public.complete_form_submission(%L, 'chat_co_1', null)$$, (select id from s where name = 'co')),
  '22023', null, 'null messages raise 22023');
select results_eq(
  $$select status, chat_id from public.form_submissions where idempotency_key = 'idem-co-0001'$$,
  $$values ('queued', null::text)$$,
  'the refused calls left the submission queued');

-- Failing an outreach -------------------------------------------------------------------------------------
select is(public.fail_form_submission((select id from s where name = 'co'), 'Retell answered 500'), true,
  'a queued submission is failed');
select results_eq(
  $$select status, failure_reason, chat_id from public.form_submissions where idempotency_key = 'idem-co-0001'$$,
  $$values ('failed', 'Retell answered 500', null::text)$$,
  'it is failed with the reason');
select is(public.fail_form_submission((select id from s where name = 'mx'), 'too late'), false,
  'a started submission is not failed (false)');
select results_eq(
  $$select status, failure_reason, chat_id from public.form_submissions where idempotency_key = 'idem-mx-0001'$$,
  $$values ('started', null::text, 'chat_mx_1')$$,
  'the started submission is untouched');
select is(public.fail_form_submission(gen_random_uuid(), 'whatever'), false, 'an unknown submission fails nothing (false)');
select is(public.fail_form_submission((select id from s where name = 'ar'), repeat('x', 2500)), true,
  'a long reason is accepted');
select is((select length(failure_reason) from public.form_submissions where idempotency_key = 'idem-ar-0001'), 2000,
  'a long reason is cut to 2000 characters');
select throws_ok(format($$select public.fail_form_submission(%L, '')$$, (select id from s where name = 'ar')),
  '22023', null, 'an empty reason raises 22023');
select throws_ok(format($$select public.fail_form_submission(%L, '   ')$$, (select id from s where name = 'ar')),
  '22023', null, 'a blank reason raises 22023');
select throws_ok(format($$select public.fail_form_submission(%L, null)$$, (select id from s where name = 'ar')),
  '22023', null, 'a null reason raises 22023');

-- A failed outreach retried later can still complete ------------------------------------------------------
select is(public.complete_form_submission((select id from s where name = 'co'), 'chat_co_1', $$[
    {"wamid": "wamid.TPL2", "message_type": "template", "body": "¡Hola Camila!"}]$$),
  '{"completed": true}'::jsonb, 'a failed submission completes when retried');
select results_eq(
  $$select status, failure_reason, chat_id from public.form_submissions where idempotency_key = 'idem-co-0001'$$,
  $$values ('started', null::text, 'chat_co_1')$$,
  'it is started, without the old reason');
reset role;

-- Privileges ----------------------------------------------------------------------------------------------
-- EXECUTE for service_role only: 00_privileges.test.sql. What anon and authenticated get:
set local role anon;
select throws_ok(format($$select public.save_turn_replies(%L, 'chat_1', '[]')$$, gen_random_uuid()),
  '42501', null, 'anon cannot call save_turn_replies');
select throws_ok(format($$select public.record_sent_reply(%L, '[]')$$, gen_random_uuid()),
  '42501', null, 'anon cannot call record_sent_reply');
select throws_ok($$select public.set_opt_out('525512345678', true)$$, '42501', null, 'anon cannot call set_opt_out');
select throws_ok(format($$select public.complete_form_submission(%L, 'chat_1', '[]')$$, gen_random_uuid()),
  '42501', null, 'anon cannot call complete_form_submission');
select throws_ok(format($$select public.fail_form_submission(%L, 'reason')$$, gen_random_uuid()),
  '42501', null, 'anon cannot call fail_form_submission');
reset role;
set local role authenticated;
select throws_ok(format($$select public.fail_form_submission(%L, 'reason')$$, gen_random_uuid()),
  '42501', null, 'authenticated cannot call fail_form_submission');
reset role;

select * from finish();
rollback;
