-- attach_chat: compare-and-set of a customer's current Retell chat, keeping every replaced chat in
-- chat_history.
begin;
select plan(27);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other three tables

set local role service_role;
create temp table res (step text primary key, r jsonb);

insert into res values ('form', public.record_form_submission('idem-1', '525512345678', '+525512345678', 'Guadalupe', true));

-- First attach ----------------------------------------------------------------------------------------
insert into res values ('first', public.attach_chat('525512345678', 'chat_A'));
select is((select r from res where step = 'first'),
  '{"attached": true, "current_chat_id": "chat_A", "previous_chat_id": null}'::jsonb,
  'the first chat is attached');
select results_eq(
  $$select current_chat_id, chat_status, chat_started_at, name from public.chat_sessions where customer_key = '525512345678'$$,
  $$values ('chat_A', 'ongoing', now(), 'Guadalupe')$$,
  'the session continues chat_A, ongoing since now, and keeps its name');
select results_eq(
  $$select chat_id, customer_key::text, started_at, ended_at, end_reason from public.chat_history order by chat_id$$,
  $$values ('chat_A', '525512345678', now(), null::timestamptz, null::text)$$,
  'chat_A is the current chat in chat_history');

-- A competing first attach loses and is told the winner ------------------------------------------
insert into res values ('race', public.attach_chat('525512345678', 'chat_B', null));
select is((select r from res where step = 'race'),
  '{"attached": false, "current_chat_id": "chat_A", "previous_chat_id": null}'::jsonb,
  'a competing first attach is refused and told the winner');
select is((select current_chat_id from public.chat_sessions where customer_key = '525512345678'), 'chat_A',
  'the refused attach does not change the current chat');
select is((select count(*)::int from public.chat_history where chat_id = 'chat_B'), 0,
  'the refused chat is not in chat_history');

-- Re-attaching the current chat is a harmless retry ------------------------------------------------
update public.chat_sessions set chat_started_at = now() - interval '1 hour' where customer_key = '525512345678';
select is(public.attach_chat('525512345678', 'chat_A'),
  '{"attached": true, "current_chat_id": "chat_A", "previous_chat_id": null}'::jsonb,
  're-attaching the current chat answers attached = true');
select is(public.attach_chat('525512345678', 'chat_A', 'chat_Z'),
  '{"attached": true, "current_chat_id": "chat_A", "previous_chat_id": null}'::jsonb,
  're-attaching the current chat answers attached = true whatever was expected');
select is((select count(*)::int from public.chat_history where customer_key = '525512345678'), 1,
  're-attaching adds nothing to chat_history');
select is((select chat_started_at from public.chat_sessions where customer_key = '525512345678'), now() - interval '1 hour',
  're-attaching does not restart the chat');

-- Rotation: Retell ended chat_A; chat_C replaces it ---------------------------------------------------
update public.chat_sessions set chat_status = 'ended' where customer_key = '525512345678';
update public.chat_history set started_at = now() - interval '1 hour' where chat_id = 'chat_A';
insert into res values ('rotate', public.attach_chat('525512345678', 'chat_C', 'chat_A', 'Retell ended the chat after silence'));
select is((select r from res where step = 'rotate'),
  '{"attached": true, "current_chat_id": "chat_C", "previous_chat_id": "chat_A"}'::jsonb,
  'a rotation with the expected chat attaches the new one and names the previous');
select results_eq(
  $$select current_chat_id, chat_status, chat_started_at from public.chat_sessions where customer_key = '525512345678'$$,
  $$values ('chat_C', 'ongoing', now())$$,
  'the session continues chat_C, ongoing again');
select results_eq(
  $$select chat_id, started_at, ended_at, end_reason from public.chat_history where customer_key = '525512345678' order by started_at$$,
  $$values ('chat_A', now() - interval '1 hour', now(), 'Retell ended the chat after silence'),
           ('chat_C', now(), null::timestamptz, null::text)$$,
  'chat_A is kept in chat_history, ended with the reason; chat_C is current');

-- A stale expected chat is refused ---------------------------------------------------------------------
insert into res values ('stale', public.attach_chat('525512345678', 'chat_D', 'chat_A', 'stale'));
select is((select r from res where step = 'stale'),
  '{"attached": false, "current_chat_id": "chat_C", "previous_chat_id": null}'::jsonb,
  'a rotation expecting a replaced chat is refused and told the current one');
select is((select count(*)::int from public.chat_history where chat_id = 'chat_D'), 0, 'the stale chat is not recorded');
select is((select end_reason from public.chat_history where chat_id = 'chat_C'), null, 'the current chat is not ended by a stale call');
select is(public.attach_chat('525512345678', 'chat_D', null),
  '{"attached": false, "current_chat_id": "chat_C", "previous_chat_id": null}'::jsonb,
  'a "first" attach for a customer who has a chat is refused');

-- Rotation without a reason ------------------------------------------------------------------------------
select is(public.attach_chat('525512345678', 'chat_E', 'chat_C'),
  '{"attached": true, "current_chat_id": "chat_E", "previous_chat_id": "chat_C"}'::jsonb, 'a second rotation attaches chat_E');
select is((select end_reason from public.chat_history where chat_id = 'chat_C'), 'replaced',
  'a rotation without a reason ends the previous chat as replaced');
select is((select count(*)::int from public.chat_history where customer_key = '525512345678' and ended_at is null), 1,
  'the customer has exactly one current chat');

-- A customer not seen before gets a session --------------------------------------------------------------
select is(public.attach_chat('541122334455', 'chat_AR'),
  '{"attached": true, "current_chat_id": "chat_AR", "previous_chat_id": null}'::jsonb, 'a new customer''s first chat is attached');
select results_eq(
  $$select current_chat_id, chat_status, name from public.chat_sessions where customer_key = '541122334455'$$,
  $$values ('chat_AR', 'ongoing', null::text)$$,
  'a session is created for them');
select is(public.attach_chat('573001234567', 'chat_CO', 'chat_expected'),
  '{"attached": false, "current_chat_id": null, "previous_chat_id": null}'::jsonb,
  'expecting a chat for a customer without one is refused');

-- Failures ----------------------------------------------------------------------------------------------
select throws_ok($$select public.attach_chat('5215598765432', 'chat_A')$$, '23505', null,
  'a chat id already used by another customer raises 23505');
select is((select count(*)::int from public.chat_sessions where customer_key = '5215598765432'), 0,
  'the refused attach left no session behind');
select throws_ok($$select public.attach_chat('55-1234', 'chat_X')$$, '23514', null, 'an invalid customer key raises 23514');
select throws_ok($$select public.attach_chat('5215598765432', null)$$, '23502', null, 'a null chat id raises 23502');

reset role;
select * from finish();
rollback;
