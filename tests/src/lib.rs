//! What the tests share beyond the sandbox: the chaos run (`make chaos`, and a short one in
//! `make test`), which drives the real doors and engine against the sandbox's stand-ins.

pub mod chaos;
