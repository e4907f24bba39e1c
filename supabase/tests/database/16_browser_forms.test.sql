-- The per-source limit of browser forms (migration 20261201000000_browser_forms): a browser's form
-- carries its source's keyed hash and a limit per hour; past it, record_form_submission answers
-- limited with when to retry and records nothing. A repeat of a recorded form is not limited;
-- servers' forms (no hash) never are; the count is taken under an advisory lock on the hash.
-- Time is a transaction's now(): rows are backdated to make them old.
begin;
select plan(32);

-- Start from an empty store: `supabase test db` runs on the seeded database (rolled back at the end).
delete from public.chat_sessions;  -- cascades to the other tables
delete from public.outreach_days;

-- The schema -------------------------------------------------------------------------------------
select has_column('public', 'form_submissions', 'source_hash', 'form_submissions.source_hash exists');
select col_is_null('public', 'form_submissions', 'source_hash', 'source_hash is null for servers'' forms');
select isnt(col_description('public.form_submissions'::regclass,
  (select attnum from pg_attribute where attrelid = 'public.form_submissions'::regclass and attname = 'source_hash')),
  null, 'source_hash is documented');
select has_index('public', 'form_submissions', 'form_submissions_by_source', array['source_hash', 'created_at'],
  'form_submissions are indexed by source and time');
select has_function('public', 'record_form_submission',
  array['text', 'text', 'text', 'text', 'boolean', 'jsonb', 'integer', 'integer', 'text', 'integer'],
  'record_form_submission takes the source''s hash and limit');
select is((select count(*)::int from pg_proc where pronamespace = 'public'::regnamespace and proname = 'record_form_submission'),
  1, 'record_form_submission has one signature (no overload for PostgREST to choose between)');

-- Privileges: service_role only, as the caller, with an empty search_path, documented -------------
select ok(has_function_privilege('service_role',
  'public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer)', 'EXECUTE'),
  'service_role may call record_form_submission');
select ok(not has_function_privilege('anon',
  'public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer)', 'EXECUTE')
  and not has_function_privilege('authenticated',
  'public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer)', 'EXECUTE'),
  'neither anon nor authenticated may call record_form_submission');
select ok((select not prosecdef and proconfig @> array['search_path=""'] from pg_proc
           where oid = 'public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer)'::regprocedure),
  'record_form_submission runs as its caller with an empty search_path');
select isnt(obj_description('public.record_form_submission(text, text, text, text, boolean, jsonb, integer, integer, text, integer)'::regprocedure, 'pg_proc'),
  null, 'record_form_submission is documented');

set local role service_role;
create temp table res (step text primary key, r jsonb);

-- Within the limit, recorded with the hash ------------------------------------------------------------
-- A source's hash (64 hex digits), and a browser form for customer n from source s.
create function pg_temp.hash(p_source text) returns text language sql
as $$ select repeat(p_source || 'f', 32) $$;
create function pg_temp.browser(p_key text, p_n integer, p_source text, p_limit integer default 3)
returns jsonb language sql as $$
  select public.record_form_submission(p_key, '5255222200' || lpad(p_n::text, 2, '0'),
    '+5255222200' || lpad(p_n::text, 2, '0'), 'Cliente ' || p_n, true, '{}', 86400, 500,
    pg_temp.hash(p_source), p_limit)
$$;

insert into res values ('a1', pg_temp.browser('k-a1', 1, 'a'));
insert into res values ('a2', pg_temp.browser('k-a2', 2, 'a'));
insert into res values ('a3', pg_temp.browser('k-a3', 3, 'a'));
select is((select count(*)::int from res where r->>'status' = 'queued' and (r->>'is_new')::boolean), 3,
  'three browser forms from one source within a limit of three are recorded and accepted');
select is((select count(*)::int from public.form_submissions where source_hash = pg_temp.hash('a')), 3,
  'each is recorded with its source''s hash');
select ok(exists (select 1 from pg_locks where locktype = 'advisory' and pid = pg_backend_pid() and granted),
  'the count was taken under an advisory lock, held until the transaction ends (concurrent forms count one by one)');

-- Past the limit: limited, nothing recorded ------------------------------------------------------------
insert into res values ('a4', pg_temp.browser('k-a4', 4, 'a'));
select is((select r->>'status' from res where step = 'a4'), 'limited', 'the fourth form from that source is limited');
select is((select (r->>'retry_after_seconds')::int from res where step = 'a4'), 3600,
  'with a retry after the hour, when the oldest of the three leaves it');
select is((select array(select jsonb_object_keys(r) order by 1) from res where step = 'a4'),
  array['retry_after_seconds', 'status'], 'a limited answer carries no submission');
select is((select count(*)::int from public.form_submissions where idempotency_key = 'k-a4'), 0,
  'a limited form is not recorded');
select is((select count(*)::int from public.chat_sessions where customer_key = '525522220004'), 0,
  'a limited form creates no session');
select is((select contacted from public.outreach_days where day = (now() at time zone 'UTC')::date), 3,
  'a limited form does not count towards the day''s outreaches');

-- A repeat of a recorded form is answered as before; another source and servers are not limited ----------
select is((select pg_temp.browser('k-a2', 2, 'a') - 'submission_id'),
  '{"is_new": false, "status": "queued", "outcome_reason": null}'::jsonb,
  'a repeat of a recorded form (a double click) is answered as before, not limited');
select is((pg_temp.browser('k-b1', 4, 'b'))->>'status', 'queued', 'another source has its own count');
select is((public.record_form_submission('k-server-1', '525522220005', '+525522220005', 'Servidor', true))->>'status',
  'queued', 'a server''s form (no hash) is never limited');
select is((select source_hash from public.form_submissions where idempotency_key = 'k-server-1'), null,
  'a server''s form has no source');

-- The window slides: the retry is when the limit-th newest leaves the hour ---------------------------------
reset role;
update public.form_submissions set created_at = now() - interval '50 minutes' where idempotency_key = 'k-a1';
update public.form_submissions set created_at = now() - interval '20 minutes' where idempotency_key = 'k-a2';
update public.form_submissions set created_at = now() - interval '61 minutes' where idempotency_key = 'k-a3';
set local role service_role;
select is((pg_temp.browser('k-a5', 6, 'a'))->>'status', 'queued',
  'a form older than an hour no longer counts: one more fits');
insert into res values ('a6', pg_temp.browser('k-a6', 7, 'a'));
select is((select (r->>'retry_after_seconds')::int from res where step = 'a6'), 600,
  'limited again, until the oldest of the three in the hour (50 minutes old) leaves it: 600 s');
select is((select (r->>'retry_after_seconds')::int from (select pg_temp.browser('k-a7', 8, 'a', 2) as r) x), 2400,
  'with a limit of two, until the second newest (20 minutes old) leaves it: 2400 s');
select is((pg_temp.browser('k-c1', 9, 'c', 0))->>'status', 'limited', 'a limit of 0 limits every browser form');
select is((select (r->>'retry_after_seconds')::int from (select pg_temp.browser('k-c2', 9, 'c', 0) as r) x), 3600,
  '... retrying after an hour');

-- Arguments ---------------------------------------------------------------------------------------------
select throws_ok($$select public.record_form_submission('k-x1', '525522220010', '+525522220010', 'X', true, '{}', 86400, 500,
    'not-a-hash', 3)$$, '22023', null, 'a hash that is not 64 hex digits is refused');
select throws_ok($$select public.record_form_submission('k-x2', '525522220010', '+525522220010', 'X', true, '{}', 86400, 500,
    repeat('ab', 32), null)$$, '22023', null, 'a hash without a limit is refused');
select throws_ok($$select public.record_form_submission('k-x3', '525522220010', '+525522220010', 'X', true, '{}', 86400, 500,
    null, 3)$$, '22023', null, 'a limit without a hash is refused');
select throws_ok($$select public.record_form_submission('k-x4', '525522220010', '+525522220010', 'X', true, '{}', 86400, 500,
    repeat('ab', 32), -1)$$, '22023', null, 'a negative limit is refused');

select * from finish();
rollback;
