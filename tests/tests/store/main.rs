//! The session store through the PostgREST-compatible API, on a real PostgreSQL with our
//! migrations and Supabase's roles and default grants. One test binary shares one stack.

mod concurrency;
mod errors;
mod lookup;
mod outcomes;
mod outreach;
mod privileges;
mod staff;
mod steps;
mod support;
mod sweep;
mod user_ids;
