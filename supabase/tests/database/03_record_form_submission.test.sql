-- record_form_submission: a web-form lead is stored once per idempotency key, and the customer's
-- session carries the form's name and phone.
begin;
select plan(27);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);

-- A new lead from Mexico.
insert into res values ('new', public.record_form_submission(
  'idem-mx-0001', '525512345678', '+525512345678', 'Guadalupe Hernández', true,
  '{"interes": "Seguro de auto", "ciudad": "CDMX"}'));
select is((select r->>'is_new' from res where step = 'new'), 'true', 'a new key answers is_new = true');
select is((select r->>'status' from res where step = 'new'), 'queued', 'a new submission is queued');
select is((select (r->>'submission_id')::uuid from res where step = 'new'),
  (select id from public.form_submissions where idempotency_key = 'idem-mx-0001'),
  'submission_id is the stored row''s id');
select results_eq(
  $$select customer_key::text, phone_e164, name, consent, fields, status, chat_id, failure_reason
    from public.form_submissions where idempotency_key = 'idem-mx-0001'$$,
  $$values ('525512345678', '+525512345678', 'Guadalupe Hernández', true,
            '{"interes": "Seguro de auto", "ciudad": "CDMX"}'::jsonb, 'queued', null::text, null::text)$$,
  'the submission is stored with its fields');
select results_eq(
  $$select name, phone_e164, current_chat_id, wa_id from public.chat_sessions where customer_key = '525512345678'$$,
  $$values ('Guadalupe Hernández', '+525512345678', null::text, null::text)$$,
  'a session is created with the form''s name and phone');

-- The same submission again (a retried POST): same id, nothing new, the session untouched.
insert into res values ('again', public.record_form_submission(
  'idem-mx-0001', '525512345678', '+525512345678', 'Lupita', true, '{}'));
select is((select r->>'is_new' from res where step = 'again'), 'false', 'a repeated key answers is_new = false');
select is((select r->>'submission_id' from res where step = 'again'), (select r->>'submission_id' from res where step = 'new'),
  'a repeated key answers the first submission''s id');
select is((select count(*)::int from public.form_submissions), 1, 'a repeated key stores nothing');
select is((select name from public.chat_sessions where customer_key = '525512345678'), 'Guadalupe Hernández',
  'a repeated key does not rename the customer');

-- A repeat reports the submission's current status.
update public.form_submissions set status = 'started', chat_id = 'chat_mx_1' where idempotency_key = 'idem-mx-0001';
select is((public.record_form_submission('idem-mx-0001', '525512345678', '+525512345678', 'Guadalupe Hernández', true))->>'status',
  'started', 'a repeated key answers the submission''s current status');

-- The same key for another customer is a conflict, and leaves nothing behind.
select throws_ok(
  $$select public.record_form_submission('idem-mx-0001', '5491122334455', '+5491122334455', 'Nicolás', true)$$,
  '23505', null, 'the same key for another customer raises 23505');
select is((select count(*)::int from public.chat_sessions where customer_key = '5491122334455'), 0,
  'the conflicting call created no session');
select is((select count(*)::int from public.form_submissions), 1, 'the conflicting call stored no submission');

-- No consent, no lead.
select throws_ok(
  $$select public.record_form_submission('idem-co-0001', '573001234567', '+573001234567', 'Camila', false)$$,
  '23514', null, 'consent = false raises 23514');
select is((select count(*)::int from public.chat_sessions where customer_key = '573001234567'), 0,
  'the refused submission created no session');
select throws_ok(
  $$select public.record_form_submission('idem-co-0002', '573001234567', '+573001234567', 'Camila', null)$$,
  '23502', null, 'consent = null raises 23502');
select throws_ok(
  $$select public.record_form_submission('idem-mx-0001', '525512345678', '+525512345678', 'Guadalupe Hernández', false)$$,
  '23514', null, 'consent = false raises 23514 even for a known key');

-- Malformed fields.
select throws_ok(
  $$select public.record_form_submission('idem-co-0003', '573001234567', '573001234567', 'Camila', true)$$,
  '23514', null, 'a phone number not in E.164 raises 23514');
select throws_ok(
  $$select public.record_form_submission('idem-co-0004', '573001234567', '+573001234567', '', true)$$,
  '23514', null, 'an empty name raises 23514');
select throws_ok(
  $$select public.record_form_submission('idem-co-0005', '573001234567', '+573001234567', 'Camila', true, '["a"]')$$,
  '23514', null, 'fields that are not a JSON object raise 23514');
select throws_ok(
  $$select public.record_form_submission('idem-co-0006', '+573001234567', '+573001234567', 'Camila', true)$$,
  '23514', null, 'an invalid customer key raises 23514');
select throws_ok(
  $$select public.record_form_submission('', '573001234567', '+573001234567', 'Camila', true)$$,
  '23514', null, 'an empty idempotency key raises 23514');

-- Fields default to {} (omitted or null).
insert into res values ('nullfields',
  public.record_form_submission('idem-co-0007', '573001234567', '+573001234567', 'Camila', true, null));
select is((select fields from public.form_submissions
           where id = (select (r->>'submission_id')::uuid from res where step = 'nullfields')),
  '{}'::jsonb, 'null fields are stored as {}');

-- A customer who wrote on WhatsApp first, then filled the form: the session gets name and phone,
-- and keeps what WhatsApp told us.
select lives_ok($$select public.record_inbound_messages('[{"wamid": "wamid.AR1", "customer_key": "541122334455",
  "message_type": "text", "body": "Hola", "sent_at": "2026-03-01T10:00:00Z", "wa_id": "5491122334455", "profile_name": "Nico"}]')$$,
  'an Argentine customer writes first');
insert into res values ('ar', public.record_form_submission(
  'idem-ar-0001', '541122334455', '+5491122334455', 'Nicolás Pérez', true, '{"plan": "hogar"}'));
select results_eq(
  $$select name, phone_e164, wa_id, whatsapp_profile_name from public.chat_sessions where customer_key = '541122334455'$$,
  $$values ('Nicolás Pérez', '+5491122334455', '5491122334455', 'Nico')$$,
  'a form on an existing session sets name and phone and keeps the WhatsApp fields');

-- A second lead (new key) for the same customer is a new submission; within the cooldown of the
-- first (see 13_outreach_rules) it is skipped and does not rename them.
insert into res values ('second', public.record_form_submission(
  'idem-ar-0002', '541122334455', '+5491122334455', 'Nicolás A. Pérez', true));
select ok((select (r->>'is_new')::boolean and r->>'submission_id' <> (select r->>'submission_id' from res where step = 'ar')
           from res where step = 'second'),
  'a new key for the same customer is a new submission');
select is((select name from public.chat_sessions where customer_key = '541122334455'), 'Nicolás Pérez',
  'a second submission within the cooldown does not rename the customer');

reset role;
select * from finish();
rollback;
