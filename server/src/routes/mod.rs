//! The HTTP routes, the OpenAPI document generated from them, and the JSON fallbacks.

pub mod access_keys;
pub mod audit;
pub mod events;
pub mod history;
pub mod keyring;
pub mod openapi;
pub mod secrets;
pub mod system;

use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Ductape Secrets", description = "Zero-knowledge secrets server: values arrive and leave encrypted by the client."),
    paths(
        secrets::create, secrets::list, secrets::get, secrets::update, secrets::delete,
        secrets::revoke, secrets::restore, secrets::batch_get, secrets::batch_create,
        history::versions, history::get_version, history::rollback, history::undelete,
        events::events,
        access_keys::create, access_keys::list, access_keys::delete,
        access_keys::session, access_keys::workspace, access_keys::setup,
        audit::list, audit::usage,
        keyring::register, keyring::pending, keyring::add_wraps, keyring::ready,
        keyring::grantees, keyring::add_grants, keyring::start, keyring::reseal_pending,
        keyring::reseal, keyring::finish,
        system::healthz, system::readyz,
    ),
    components(schemas(ductape::wire::SecretPage)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "access_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The '<id>.<secret>' part of a Ductape access key"))
                    .build(),
            ),
        );
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/secrets", post(secrets::create).get(secrets::list))
        .route("/v1/secrets/batch-get", post(secrets::batch_get))
        .route("/v1/secrets/batch-create", post(secrets::batch_create))
        .route(
            "/v1/secrets/{key}",
            get(secrets::get)
                .patch(secrets::update)
                .delete(secrets::delete),
        )
        .route("/v1/secrets/{key}/revoke", post(secrets::revoke))
        .route("/v1/secrets/{key}/restore", post(secrets::restore))
        .route("/v1/secrets/{key}/usage", get(audit::usage))
        .route("/v1/secrets/{key}/versions", get(history::versions))
        .route(
            "/v1/secrets/{key}/versions/{version}",
            get(history::get_version),
        )
        .route("/v1/secrets/{key}/rollback", post(history::rollback))
        .route("/v1/secrets/{key}/undelete", post(history::undelete))
        .route(
            "/v1/access-keys",
            post(access_keys::create).get(access_keys::list),
        )
        .route(
            "/v1/access-keys/{id}",
            axum::routing::delete(access_keys::delete),
        )
        .route("/v1/session", get(access_keys::session))
        .route("/v1/workspace", get(access_keys::workspace))
        .route("/v1/setup", post(access_keys::setup))
        .route("/v1/audit", get(audit::list))
        .route("/v1/events", get(events::events))
        .route("/v1/keyring/bindings", post(keyring::register))
        .route("/v1/keyring/bindings/{id}/pending", post(keyring::pending))
        .route("/v1/keyring/bindings/{id}/wraps", post(keyring::add_wraps))
        .route("/v1/keyring/bindings/{id}/ready", post(keyring::ready))
        .route("/v1/keyring/grantees", get(keyring::grantees))
        .route("/v1/keyring/grants", post(keyring::add_grants))
        .route("/v1/keyring/generations", post(keyring::start))
        .route("/v1/keyring/reseal/pending", post(keyring::reseal_pending))
        .route("/v1/keyring/reseal", post(keyring::reseal))
        .route("/v1/keyring/finish", post(keyring::finish))
        .route("/", get(crate::console::index))
        .route("/assets/{file}", get(crate::console::asset))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/openapi.json", get(system::openapi))
        .route("/metrics", get(system::metrics))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .with_state(state)
}
