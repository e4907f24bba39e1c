-- record_webhook's opt-outs: a customer who stopped our marketing messages in WhatsApp (Meta's
-- `user_preferences` webhook) is opted out as by an opt-out word, in the same call as the rest of
-- the delivery; a repeat changes nothing; the function stays backend-only.
begin;
select plan(27);

delete from public.chat_sessions;
delete from public.unprocessed_webhook_events;

-- The function ----------------------------------------------------------------------------------
select has_function('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb'],
  'record_webhook(messages, statuses, unprocessed, opt_outs, echoes, user_id_changes) exists');
select hasnt_function('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb'],
  'the three-argument record_webhook is gone (no overload for PostgREST to choose between)');
select is((select p.prosecdef from pg_proc p where p.oid = 'public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb, jsonb)'::regprocedure),
  false, 'it runs as the caller');
select is((select p.proconfig from pg_proc p where p.oid = 'public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb, jsonb)'::regprocedure),
  array['search_path=""'], 'with an empty search_path');
select function_privs_are('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb'], 'service_role',
  array['EXECUTE'], 'service_role may execute record_webhook');
select function_privs_are('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb'], 'anon',
  array[]::text[], 'anon may not');
select function_privs_are('public', 'record_webhook', array['jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb', 'jsonb'], 'authenticated',
  array[]::text[], 'authenticated may not');
select is(
  (select count(*)::int from pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
   where p.oid = 'public.record_webhook(jsonb, jsonb, jsonb, jsonb, jsonb, jsonb)'::regprocedure
     and a.grantee = 0 and a.privilege_type = 'EXECUTE'),
  0, 'PUBLIC has no EXECUTE on it');
set local role anon;
select throws_ok($$select public.record_webhook('[]', '[]', '[]', '[]')$$, '42501', null, 'anon cannot call it');
reset role;

set local role service_role;
create temporary table res (step text primary key, r jsonb) on commit drop;

-- A customer we know, writing in the same delivery, and one we never met ------------------------------
insert into res values ('first', public.record_webhook(
  $$[{"wamid": "wamid.R1", "customer_key": "525512345678", "message_type": "text", "body": "hola",
      "sent_at": "2026-03-01T10:00:00Z", "wa_id": "5215512345678"}]$$,
  '[]',
  '[]',
  $$[{"customer_key": "525512345678", "wa_id": "5215512345678", "at": "2026-03-01T10:05:00Z"},
     {"customer_key": "541122334455", "wa_id": "5491122334455", "at": "2026-03-01T10:05:00Z"},
     {"customer_key": "541122334455", "wa_id": "5491122334455", "at": "2026-03-01T10:05:01Z"}]$$));
select is((select r->'messages'->0->>'is_new' from res where step = 'first'), 'true',
  'the messages of the same call are recorded');
select is((select r->'opt_outs' from res where step = 'first'),
  '[{"customer_key": "525512345678", "changed": true}, {"customer_key": "541122334455", "changed": true}]'::jsonb,
  'each customer is opted out once, and said so');
select is((select opted_out_at from public.chat_sessions where customer_key = '525512345678'), now(),
  'a known customer is opted out, as by an opt-out word');
select is((select opted_out_at from public.chat_sessions where customer_key = '541122334455'), now(),
  'a customer we never met is opted out too');
select is((select wa_id from public.chat_sessions where customer_key = '541122334455'), '5491122334455',
  'with the WhatsApp id of the new session');
select is((select last_inbound_at from public.chat_sessions where customer_key = '541122334455'), null,
  'an opt-out is not a message: the 24-hour window stays closed');
select is((select opted_out from public.chat_session_overview where customer_key = '541122334455'), true,
  'the overview shows the opt-out');

-- Meta delivers the same again: nothing changes ------------------------------------------------------
update public.chat_sessions set opted_out_at = '2026-03-01T10:05:00Z' where customer_key = '525512345678';
insert into res values ('again', public.record_webhook('[]', '[]', '[]',
  $$[{"customer_key": "525512345678", "wa_id": "5215512345678"}]$$));
select is((select r->'opt_outs' from res where step = 'again'),
  '[{"customer_key": "525512345678", "changed": false}]'::jsonb, 'a repeat changes nothing');
select is((select opted_out_at from public.chat_sessions where customer_key = '525512345678'),
  '2026-03-01T10:05:00Z'::timestamptz, 'and keeps the first opted_out_at');
select is((select count(*)::int from public.chat_sessions), 2, 'and creates no session');

-- Without opt-outs, the answer says none --------------------------------------------------------------
insert into res values ('none', public.record_webhook('[]', '[]', $$[{"reason": "r14", "payload": {}}]$$));
select is((select r->'opt_outs' from res where step = 'none'), '[]'::jsonb, 'no opt-outs, none reported');

-- A reason longer than the column holds is cut, not refused (Meta would retry for ever) ------------------
select lives_ok($$select public.record_webhook('[]', '[]',
  jsonb_build_array(jsonb_build_object('reason', 'r14-long ' || repeat('x', 5000), 'payload', '{}'::jsonb),
                    jsonb_build_object('reason', '', 'payload', '{}'::jsonb)))$$,
  'an overlong or empty reason does not refuse the delivery');
select is((select length(reason) from public.unprocessed_webhook_events where reason like 'r14-long %'), 2000,
  'the reason is cut to 2000 characters');

-- A bad opt-out refuses the whole delivery ------------------------------------------------------------
select throws_ok($$select public.record_webhook('[]', '[]', '[{"reason": "r14-bad", "payload": null}]',
  '[{"customer_key": "not a key"}]')$$, '23514', null, 'an invalid customer key refuses the delivery');
select throws_ok($$select public.record_webhook('[]', '[]', '[{"reason": "r14-bad", "payload": null}]',
  '[{"wa_id": "5215512345678"}]')$$, '22023', null, 'an opt-out without a customer refuses the delivery');
select throws_ok($$select public.record_webhook('[]', '[]', '[]', '{"customer_key": "525512345678"}')$$,
  '22023', null, 'opt-outs that are not an array refuse the delivery');
select is((select count(*)::int from public.unprocessed_webhook_events where reason = 'r14-bad'), 0,
  'and nothing of it is kept');

-- Opting back in stays with the customer's words ---------------------------------------------------------
select is(public.set_opt_out('541122334455', false), '{"changed": true, "opted_out_at": null}'::jsonb,
  'an opt-in word clears a WhatsApp opt-out like any other');

select * from finish();
rollback;
