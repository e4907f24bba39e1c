//! The conversation engine end to end: the store on the local stack, the real Retell and Graph
//! clients against their stand-ins.

mod burst;
mod faults;
mod media;
mod outcomes;
mod people_and_windows;
mod redelivery;
mod scenarios;
mod staff;
mod support;
mod typing;
mod usernames;
mod voice;
