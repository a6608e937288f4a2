//! The TES HTTP API (axum): routes, bearer-token authentication, error answers and the
//! OpenAPI document (generated from the types with utoipa, served at `openapi.json`).
//!
//! Every request but `service-info` and `openapi.json` needs `Authorization: Bearer TOKEN`, a
//! VO token from `ssi login`. Errors are `{"msg": ..., "status_code": ...}`: 400 for a bad
//! request (the message starts with the field), 401 for a missing, forged or expired token,
//! 403 when the policies refuse, 404 for an unknown task, 503 when no account can be leased.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Path, RawQuery, State as AxState};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;

use super::model::{
    CreateTaskResponse, ErrorBody, ListTasksResponse, Organization, ServiceInfo, ServiceType,
    State, Task,
};
use super::service::{ListQuery, TaskService};
use super::validate::BACKEND_PARAMETERS;
use super::view::View;
use crate::credential::{TrustAnchors, VoIdentity};
use crate::error::Error;
use crate::resources::{advertise, Requirement, ResourceDoc, ResourceSource};

/// Where the API lives.
pub const BASE: &str = "/ga4gh/tes/v1";

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    /// The task service.
    pub service: Arc<TaskService>,
    /// Verifies bearer tokens.
    pub trust: Arc<TrustAnchors>,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Where the resource document's figures come from.
    pub resources: Arc<dyn ResourceSource>,
}

/// An error as an HTTP answer.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::Invalid { .. } | Error::Fqan { .. } | Error::Requirement { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::NoSuchTask(_) => StatusCode::NOT_FOUND,
            Error::Denied { .. } => StatusCode::FORBIDDEN,
            Error::Expired { .. } | Error::Credential(_) | Error::Untrusted { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Error::Account { .. } | Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = ErrorBody {
            msg: self.0.to_string(),
            status_code: status.as_u16(),
        };
        let mut r = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The caller, from a verified bearer token.
#[derive(Debug)]
pub struct Caller(pub VoIdentity);

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(Caller(state.trust.verify_token(token, now)?))
    }
}

fn bearer(h: &HeaderMap) -> Result<&str, Error> {
    let v = h.get(header::AUTHORIZATION).ok_or_else(|| {
        Error::Credential("no Authorization header: send 'Bearer TOKEN' (ssi login --token)".into())
    })?;
    v.to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::Credential("Authorization header is not 'Bearer TOKEN'".into()))
}

/// The service-info document.
fn service_info(state: &ApiState) -> ServiceInfo {
    ServiceInfo {
        id: "org.ssi.tes".into(),
        name: "ssi cluster".into(),
        kind: ServiceType { group: "org.ga4gh".into(), artifact: "tes".into(), version: "1.1.0".into() },
        description: "The ssi cluster as one grid node: tasks run through the cluster's placement as mapped pool accounts".into(),
        organization: Organization { name: "ssi".into(), url: "https://example.invalid/ssi".into() },
        version: env!("CARGO_PKG_VERSION").into(),
        storage: state.service.config().storage.clone(),
        tes_resources_backend_parameters: BACKEND_PARAMETERS.iter().map(|s| s.to_string()).collect(),
    }
}

#[utoipa::path(get, path = "/ga4gh/tes/v1/service-info", responses((status = 200, body = ServiceInfo)))]
async fn get_service_info(AxState(s): AxState<Arc<ApiState>>) -> Json<ServiceInfo> {
    Json(service_info(&s))
}

#[utoipa::path(post, path = "/ga4gh/tes/v1/tasks", request_body = Task, security(("bearer" = [])),
    responses((status = 200, body = CreateTaskResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_task(
    AxState(s): AxState<Arc<ApiState>>,
    Caller(who): Caller,
    body: axum::body::Body,
) -> ApiResult<Json<CreateTaskResponse>> {
    let bytes = axum::body::to_bytes(body, s.max_body).await.map_err(|_| {
        Error::invalid(
            "task",
            format!("request body is larger than {} bytes", s.max_body),
        )
    })?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let task: Task = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "task".to_string(),
            p => p,
        };
        Error::invalid(field, e.into_inner().to_string())
    })?;
    let id = s.service.create(&who, task).await?;
    Ok(Json(CreateTaskResponse { id }))
}

#[utoipa::path(get, path = "/ga4gh/tes/v1/tasks", security(("bearer" = [])),
    params(("name_prefix" = Option<String>, Query), ("state" = Option<State>, Query), ("tag_key" = Option<Vec<String>>, Query),
           ("tag_value" = Option<Vec<String>>, Query), ("page_size" = Option<u32>, Query), ("page_token" = Option<String>, Query),
           ("view" = Option<String>, Query, description = "MINIMAL (default), BASIC or FULL")),
    responses((status = 200, body = ListTasksResponse), (status = 400, body = ErrorBody)))]
async fn list_tasks(
    AxState(s): AxState<Arc<ApiState>>,
    Caller(who): Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ListTasksResponse>> {
    let q = list_query(raw.as_deref().unwrap_or_default())?;
    Ok(Json(s.service.list(&who, &q).await?))
}

/// The list filters of a query string; `tag_key` and `tag_value` repeat and pair up in order.
fn list_query(raw: &str) -> Result<ListQuery, Error> {
    let mut q = ListQuery::default();
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "name_prefix" => q.name_prefix = Some(v),
            "state" => {
                q.state = Some(
                    serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|_| {
                        Error::invalid("state", format!("{v:?} is not a TES state"))
                    })?,
                )
            }
            "tag_key" => keys.push(v),
            "tag_value" => values.push(v),
            "page_size" => {
                q.page_size =
                    Some(v.parse().map_err(|_| {
                        Error::invalid("page_size", format!("{v:?} is not a number"))
                    })?)
            }
            "page_token" => q.page_token = Some(v),
            "view" => q.view = v.parse()?,
            _ => {}
        }
    }
    if values.len() > keys.len() {
        return Err(Error::invalid("tag_value", "more tag_value than tag_key"));
    }
    values.resize(keys.len(), String::new());
    q.tags = keys.into_iter().zip(values).collect();
    Ok(q)
}

fn view_of(raw: Option<&str>) -> Result<View, Error> {
    let mut view = View::Minimal;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if k == "view" {
            view = v.parse()?;
        }
    }
    Ok(view)
}

#[utoipa::path(get, path = "/ga4gh/tes/v1/tasks/{id}", security(("bearer" = [])),
    params(("id" = String, Path), ("view" = Option<String>, Query, description = "MINIMAL (default), BASIC or FULL")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody)))]
async fn get_task(
    AxState(s): AxState<Arc<ApiState>>,
    Caller(who): Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let view = view_of(raw.as_deref())?;
    Ok(Json(s.service.get(&who, &id, view).await?))
}

/// `POST /tasks/{id}:cancel` (the router sees `{id}:cancel` as one path element).
#[utoipa::path(post, path = "/ga4gh/tes/v1/tasks/{id}:cancel", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "cancel requested"), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn cancel_task(
    AxState(s): AxState<Arc<ApiState>>,
    Caller(who): Caller,
    Path(id_cancel): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = id_cancel.strip_suffix(":cancel").ok_or_else(|| {
        Error::invalid(
            "path",
            format!("POST {BASE}/tasks/{id_cancel}: only ':cancel' can be posted to a task"),
        )
    })?;
    s.service.cancel(&who, id).await?;
    Ok(Json(serde_json::json!({})))
}

/// The resource document, and whether it meets `match` when given.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ResourcesAnswer {
    /// The cluster as one node (GLUE 2.0 names; see docs/GRID.md).
    #[schema(value_type = Object)]
    resources: ResourceDoc,
    /// Whether the cluster meets the `match` requirement, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    matches: Option<bool>,
}

/// `GET /resources[?match=REQUIREMENT]`, an ssi extension: the cluster as one node.
#[utoipa::path(get, path = "/ga4gh/tes/v1/resources", security(("bearer" = [])),
    params(("match" = Option<String>, Query, description = "a requirement such as cores>=64 && mem_gb>=128")),
    responses((status = 200, body = ResourcesAnswer), (status = 400, body = ErrorBody)))]
async fn get_resources(
    AxState(s): AxState<Arc<ApiState>>,
    Caller(_who): Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ResourcesAnswer>> {
    let doc = advertise(
        &s.resources.nodes(),
        &s.service.config().queues,
        s.resources.dfs_bytes(),
    );
    let mut matches = None;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if k == "match" {
            let req: Requirement = v
                .parse()
                .map_err(|e: Error| Error::invalid("match", e.to_string()))?;
            matches = Some(req.matches(&doc.ssi));
        }
    }
    Ok(Json(ResourcesAnswer {
        resources: doc,
        matches,
    }))
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI description of this API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "ssi Task Execution Service", description = "GA4GH TES v1.1 served by the ssi cluster"),
    paths(get_service_info, create_task, list_tasks, get_task, cancel_task, get_resources),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The router of the API, mounted at [`BASE`].
pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/service-info", get(get_service_info))
        .route("/openapi.json", get(openapi))
        .route("/resources", get(get_resources))
        .route("/tasks", get(list_tasks).post(create_task))
        .route("/tasks/{id}", get(get_task).post(cancel_task))
        .with_state(state);
    Router::new().nest(BASE, api)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_pair_tags_and_check_values() {
        let q = list_query(
            "name_prefix=ab&state=RUNNING&tag_key=a&tag_value=1&tag_key=b&view=BASIC&page_size=2",
        )
        .unwrap();
        assert_eq!(q.name_prefix.as_deref(), Some("ab"));
        assert_eq!(q.state, Some(State::Running));
        assert_eq!(
            q.tags,
            [
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), String::new())
            ]
        );
        assert_eq!((q.view, q.page_size), (View::Basic, Some(2)));
        let e = list_query("state=RUNNIN").unwrap_err().to_string();
        assert_eq!(e, "state: \"RUNNIN\" is not a TES state");
        assert!(list_query("view=ALL")
            .unwrap_err()
            .to_string()
            .starts_with("view:"));
    }

    #[test]
    fn the_openapi_document_has_every_path() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/ga4gh/tes/v1/service-info",
            "/ga4gh/tes/v1/tasks",
            "/ga4gh/tes/v1/tasks/{id}",
            "/ga4gh/tes/v1/tasks/{id}:cancel",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        assert!(doc["components"]["schemas"]["Task"].is_object());
    }
}
