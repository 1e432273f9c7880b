//! Integration tests: the real server over HTTP, and the real binary.

mod capture;
mod helpers;

mod account;
mod admin;
mod cli;
mod clients;
mod cluster;
mod compat;
mod connections;
mod docs;
mod feed;
mod interop;
mod jwt_attacks;
mod keys;
mod library;
mod malformed;
mod metrics;
mod personal_tokens;
mod protected;
mod sessions;
mod startup;
mod store;
mod throttle;
mod tls;
mod token;
mod usernames;
