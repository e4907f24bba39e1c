-- What a Supabase project has before our migrations run: its API roles and its default grants.
-- The local stack loads this so tests see the same privileges as a real project; in particular
-- Supabase grants every new table and function in `public` to anon and authenticated, which our
-- migrations must take back.
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit password 'authenticator';
grant anon, authenticated, service_role to authenticator;

grant usage on schema public to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to anon, authenticated, service_role;

-- Supabase's pgcrypto/uuid helpers live in `extensions`; gen_random_uuid() is core since PG 13.
create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
