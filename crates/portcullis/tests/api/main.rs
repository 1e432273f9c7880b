//! Integration tests: the real server over HTTP, and the real binary.

mod helpers;

mod cli;
mod compat;
mod docs;
mod malformed;
mod protected;
mod startup;
mod token;
