//! The integration tests, one binary: every module links the whole stack (the functions, the
//! simulator, moto through the real SDK), so one link instead of one per file. Run one area with
//! `cargo test -p broker-tests --test it MODULE::` (for example `quotas::`).

mod adversity;
mod api_hardening;
mod api_lambda;
mod api_load;
mod api_logs;
mod api_routes;
mod api_token_lifecycle;
mod api_tokens;
mod callers;
mod connect_ringcx;
mod dev_stack;
mod docs_match_code;
mod fuzz_openapi;
mod hooks;
mod lifecycle;
mod no_secrets;
mod odd_answers;
mod operator_cli;
mod parser_properties;
mod queued_hooks;
mod quotas;
mod refresher_handler;
mod refresher_lambda;
mod refresher_scale;
mod renew;
mod ringcx_client;
mod simulator;
mod status;
mod store_contract;
mod store_errors;
mod template;
