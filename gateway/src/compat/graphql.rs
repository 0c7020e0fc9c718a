//! `POST /graphql` (and `GET /graphql?query=…`): maildrop.cc's GraphQL API, as its documentation
//! describes it, over our store.
//!
//! Sources (read 2025; the pages are the contract existing clients were written against):
//! - overview and method table: <https://docs.maildrop.cc/api-reference/overview>
//! - schema page and `ping`: <https://docs.maildrop.cc/api-reference/graphql-api-schema>
//! - `inbox`: <https://docs.maildrop.cc/api-reference/get-a-mailbox-listing>
//! - `delete`: <https://docs.maildrop.cc/api-reference/delete-a-message>
//! - `altinbox`: <https://docs.maildrop.cc/api-reference/get-a-mailbox-alias>
//! - `statistics`: <https://docs.maildrop.cc/api-reference/maildrop-statistics>,
//!   <https://docs.maildrop.cc/graphql-types/statistics>
//! - `status`: <https://docs.maildrop.cc/api-reference/service-status>
//! - `Message`: <https://docs.maildrop.cc/graphql-types/message>
//!
//! The schema this module serves (`schema().sdl()` is checked against it in the tests):
//!
//! ```graphql
//! type Query {
//!   ping(message: String): String
//!   inbox(mailbox: String): [Message]
//!   message(mailbox: String, id: String): Message
//!   altinbox(mailbox: String): String
//!   statistics: Statistics
//!   status: String
//! }
//! type Mutation { delete(mailbox: String, id: String): Boolean }
//! type Message {
//!   id: String  ip: String  helo: String  date: String  mailfrom: String  rcptto: [String]
//!   headerfrom: String  subject: String  data: String  html: String
//! }
//! type Statistics { blocked: Int  saved: Int }
//! ```
//!
//! **Why the arguments are nullable.** The method table declares them `$mailbox: String`,
//! `$id: String`, `$message: String`. Nullable arguments also accept clients that declare their
//! variables `String!` (as the documentation's own React examples do), whereas `String!` arguments
//! would make every client declaring `String` fail validation. A missing `mailbox` or `id` is then
//! an error from the resolver, with the code `missing_argument`.
//!
//! **Behaviour, as documented.** `ping` echoes `pong <message>`. `inbox` lists newest first, with
//! `data` and `html` null ("for performance reasons"); the envelope fields of a listing entry are
//! loaded only if asked for. `message` is `null` for an id the mailbox does not have. `delete`
//! answers `true` even for an unknown mailbox/id combination ("incorrect mailbox/id combinations
//! will still return true"), and publishes `deleted` exactly like `DELETE /api/…`. `status` is
//! `operational`, or a sentence naming what is down. `statistics` maps `blocked` to our `rejected`
//! counter and `saved` to `stored`. Errors follow GraphQL: the field is `null` and `errors[]`
//! carries the message with `extensions.code` (our API's codes: `invalid_mailbox`, `invalid_id`,
//! `store_unavailable`, `bus_unavailable`, plus `missing_argument`).
//!
//! **Deviations.** Message ids are our 26-character ULIDs (maildrop.cc: 10 characters); clients
//! treat them as opaque. `altinbox` returns our alias (`d-` and 16 lower-case base32 characters,
//! an HMAC, see `maildrop_contract::alias`) where maildrop.cc returned `D-` and base 36
//! (`D-1lp8kheq`); mail addressing is case-insensitive, so either case delivers. `html` is
//! sanitised, and a plain-text body in its place is HTML-escaped. `headerfrom` falls back to the
//! envelope sender when a message has no `From:` header. A malformed id in `message` is an
//! `invalid_id` error rather than a silent `null`.
//!
//! **Protection.** The request body (or the `GET` query string) is limited to
//! [`MAX_DOCUMENT_BYTES`]; queries are limited in depth and complexity, with the fields that reach
//! Redis weighted so that a document cannot fan out into hundreds of store reads; batches are not
//! accepted; `GET` runs queries only, so a link or an `<img>` can never delete mail. Introspection
//! stays on: generated clients and GraphQL tooling need it.
//!
//! We use `async-graphql` for parsing, validation and execution, but not `async-graphql-axum`:
//! its extractor reads the body without a size limit and accepts multipart uploads, neither of
//! which this API wants; our two handlers are a few lines each.

use async_graphql::parser::types::OperationType;
use async_graphql::{
    Context, EmptySubscription, ErrorExtensions, Object, Request, Schema, Variables,
};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use maildrop_contract::mailbox::InvalidMailbox;
use maildrop_contract::{Mailbox, MessageId, MessageSummary};
use maildrop_store::{StoreError, StoredMessage};
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::{Statistics, html_or_text, iso_date};
use crate::error::ApiError;
use crate::state::AppState;

/// The largest GraphQL request accepted: the JSON body of a `POST`, or the decoded `query` and
/// `variables` of a `GET`. Every documented operation fits in a few hundred bytes.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024;
/// Deep enough for the standard introspection query (its `TypeRef` fragment nests `ofType` seven
/// times), far more than any documented operation needs.
const MAX_DEPTH: usize = 16;
/// Every field counts 1; a field that reads Redis counts [`STORE_COST`] more.
const MAX_COMPLEXITY: usize = 512;
const STORE_COST: usize = 20;

pub type CompatSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// The schema, with its limits. Built once, by [`super::router`].
pub fn schema() -> CompatSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// Why a request was refused before it reached the executor.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the GraphQL request is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the body is not a GraphQL request (a JSON object with \"query\"): {0}")]
    NotARequest(#[source] serde_json::Error),
    #[error("the query string is not a GraphQL request: {0}")]
    BadQueryString(String),
    #[error("\"variables\" is not a JSON object: {0}")]
    BadVariables(#[source] serde_json::Error),
    #[error("mutations must be sent with POST")]
    MutationOverGet,
}

impl RequestError {
    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MutationOverGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotARequest(_) | Self::BadQueryString(_) | Self::BadVariables(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "payload_too_large",
            Self::MutationOverGet => "method_not_allowed",
            Self::NotARequest(_) | Self::BadQueryString(_) | Self::BadVariables(_) => "bad_request",
        }
    }
}

impl IntoResponse for RequestError {
    /// A GraphQL "request error": `errors` and no `data`, since nothing was executed.
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "message": self.to_string(), "extensions": { "code": self.code() } }]
        });
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, Self::MutationOverGet) {
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        }
        response
    }
}

/// `POST /graphql` with `{"query", "operationName"?, "variables"?}`.
pub async fn post(
    State(state): State<AppState>,
    Extension(schema): Extension<CompatSchema>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_DOCUMENT_BYTES) {
        return RequestError::TooLarge.into_response();
    }
    // Also bounds a chunked body that declared nothing.
    let Ok(bytes) = axum::body::to_bytes(body, MAX_DOCUMENT_BYTES).await else {
        return RequestError::TooLarge.into_response();
    };
    match serde_json::from_slice::<Request>(&bytes) {
        Ok(request) => execute(&schema, state, request).await,
        Err(e) => RequestError::NotARequest(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct GetParams {
    query: String,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
}

/// `GET /graphql?query=…[&operationName=…][&variables=<json>]`, for queries only.
pub async fn get(
    State(state): State<AppState>,
    Extension(schema): Extension<CompatSchema>,
    uri: Uri,
) -> Response {
    // Percent-encoding at most triples the size; refuse before decoding anything larger.
    if uri.query().map_or(0, str::len) > 3 * MAX_DOCUMENT_BYTES {
        return RequestError::TooLarge.into_response();
    }
    let params = match Query::<GetParams>::try_from_uri(&uri) {
        Ok(Query(params)) => params,
        Err(e) => return RequestError::BadQueryString(e.body_text()).into_response(),
    };
    let size = params.query.len() + params.variables.as_deref().map_or(0, str::len);
    if size > MAX_DOCUMENT_BYTES {
        return RequestError::TooLarge.into_response();
    }
    if has_mutation(&params.query) {
        return RequestError::MutationOverGet.into_response();
    }
    let mut request = Request::new(params.query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables {
        match serde_json::from_str(&variables) {
            Ok(json) => request = request.variables(Variables::from_json(json)),
            Err(e) => return RequestError::BadVariables(e).into_response(),
        }
    }
    execute(&schema, state, request).await
}

/// Whether the document defines a mutation. A document that does not parse has none: the executor
/// then reports the syntax error the usual way.
fn has_mutation(query: &str) -> bool {
    async_graphql::parser::parse_query(query).is_ok_and(|doc| {
        doc.operations
            .iter()
            .any(|(_, op)| op.node.ty == OperationType::Mutation)
    })
}

async fn execute(schema: &CompatSchema, state: AppState, request: Request) -> Response {
    let response = schema.execute(request.data(state)).await;
    Json(response).into_response()
}

/// Why a resolver failed; becomes a GraphQL error with `extensions.code`.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("argument `{0}` is required")]
    MissingArgument(&'static str),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the GraphQL request has no application state")]
    NoState,
}

impl From<InvalidMailbox> for ResolveError {
    fn from(e: InvalidMailbox) -> Self {
        Self::Api(e.into())
    }
}

impl From<StoreError> for ResolveError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl ResolveError {
    fn code(&self) -> &'static str {
        match self {
            Self::MissingArgument(_) => "missing_argument",
            Self::Api(e) => e.code(),
            Self::NoState => "internal",
        }
    }

    /// Logs what the operator should see (the store or bus being down), then converts.
    fn into_graphql(self) -> async_graphql::Error {
        let server_side = match &self {
            Self::Api(e) => e.status().is_server_error(),
            Self::NoState => true,
            Self::MissingArgument(_) => false,
        };
        if server_side {
            let cause = std::error::Error::source(&self).map(ToString::to_string);
            tracing::warn!(code = self.code(), error = %self, cause, "GraphQL resolver failed.");
        }
        self.extend()
    }
}

impl ErrorExtensions for ResolveError {
    fn extend(&self) -> async_graphql::Error {
        let code = self.code();
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| e.set("code", code))
    }
}

fn state<'a>(ctx: &Context<'a>) -> Result<&'a AppState, ResolveError> {
    ctx.data::<AppState>().map_err(|_| ResolveError::NoState)
}

fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, ResolveError> {
    value.as_deref().ok_or(ResolveError::MissingArgument(name))
}

fn mailbox(value: &Option<String>) -> Result<Mailbox, ResolveError> {
    Ok(Mailbox::parse(required(value, "mailbox")?)?)
}

/// The root query type, named `Query` as in maildrop.cc's schema.
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// Echo resolver: `pong ` followed by `message`.
    async fn ping(&self, message: Option<String>) -> Option<String> {
        Some(match message {
            Some(message) => format!("pong {message}"),
            None => "pong".to_owned(),
        })
    }

    /// The mailbox's messages, newest first, with `data` and `html` null.
    #[graphql(complexity = "STORE_COST + child_complexity")]
    async fn inbox(
        &self,
        ctx: &Context<'_>,
        mailbox: Option<String>,
    ) -> async_graphql::Result<Option<Vec<Option<Message>>>> {
        inbox(ctx, &mailbox)
            .await
            .map_err(ResolveError::into_graphql)
    }

    /// One message with its raw source (`data`) and body (`html`); `null` if the mailbox does not
    /// have it.
    #[graphql(complexity = "STORE_COST + child_complexity")]
    async fn message(
        &self,
        ctx: &Context<'_>,
        mailbox: Option<String>,
        id: Option<String>,
    ) -> async_graphql::Result<Option<Message>> {
        message(ctx, &mailbox, &id)
            .await
            .map_err(ResolveError::into_graphql)
    }

    /// The mailbox's alias: mail sent to it is delivered to the mailbox.
    #[graphql(complexity = "STORE_COST")]
    async fn altinbox(
        &self,
        ctx: &Context<'_>,
        mailbox: Option<String>,
    ) -> async_graphql::Result<Option<String>> {
        altinbox(ctx, &mailbox)
            .await
            .map_err(ResolveError::into_graphql)
    }

    /// Messages blocked and saved since the service began counting.
    #[graphql(complexity = "STORE_COST + child_complexity")]
    async fn statistics(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Statistics>> {
        statistics(ctx).await.map_err(ResolveError::into_graphql)
    }

    /// `operational`, or a sentence naming what is not.
    #[graphql(complexity = "STORE_COST")]
    async fn status(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        status(ctx).await.map_err(ResolveError::into_graphql)
    }
}

async fn inbox(
    ctx: &Context<'_>,
    mailbox: &Option<String>,
) -> Result<Option<Vec<Option<Message>>>, ResolveError> {
    let mailbox = self::mailbox(mailbox)?;
    let list = state(ctx)?.mail.list(&mailbox).await?;
    Ok(Some(
        list.into_iter()
            .map(|summary| Some(Message::listed(summary)))
            .collect(),
    ))
}

async fn message(
    ctx: &Context<'_>,
    mailbox: &Option<String>,
    id: &Option<String>,
) -> Result<Option<Message>, ResolveError> {
    let mailbox = self::mailbox(mailbox)?;
    let id: MessageId = required(id, "id")?.parse().map_err(ApiError::from)?;
    let doc = state(ctx)?.mail.get(&mailbox, &id).await?;
    Ok(doc.map(Message::full))
}

async fn altinbox(
    ctx: &Context<'_>,
    mailbox: &Option<String>,
) -> Result<Option<String>, ResolveError> {
    let mailbox = self::mailbox(mailbox)?;
    let alias = state(ctx)?.reveal_alias(&mailbox).await?;
    Ok(Some(alias.to_string()))
}

async fn statistics(ctx: &Context<'_>) -> Result<Option<Statistics>, ResolveError> {
    let stats = state(ctx)?.stats.read().await?;
    Ok(Some(Statistics::from(&stats)))
}

async fn status(ctx: &Context<'_>) -> Result<Option<String>, ResolveError> {
    let state = state(ctx)?;
    let store = state.mail.ping().await.is_ok();
    let bus = matches!(
        state.js.client().connection_state(),
        async_nats::connection::State::Connected
    );
    let status = match (store, bus) {
        (true, true) => "operational",
        (false, true) => "storage unavailable",
        (true, false) => "message bus unavailable",
        (false, false) => "storage and message bus unavailable",
    };
    Ok(Some(status.to_owned()))
}

/// The root mutation type, named `Mutation` as in maildrop.cc's schema.
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Deletes a message. `true` also when the mailbox did not have it, as documented.
    #[graphql(complexity = "STORE_COST")]
    async fn delete(
        &self,
        ctx: &Context<'_>,
        mailbox: Option<String>,
        id: Option<String>,
    ) -> async_graphql::Result<Option<bool>> {
        delete(ctx, &mailbox, &id)
            .await
            .map_err(ResolveError::into_graphql)
    }
}

async fn delete(
    ctx: &Context<'_>,
    mailbox: &Option<String>,
    id: &Option<String>,
) -> Result<Option<bool>, ResolveError> {
    let mailbox = self::mailbox(mailbox)?;
    let id = required(id, "id")?;
    let state = state(ctx)?.clone();
    // The REST handler owns deleting: the store, the `deleted` event, the log line.
    let path = axum::extract::Path((mailbox.to_string(), id.to_owned()));
    match crate::routes::message::delete(State(state), path).await {
        Ok(_) | Err(ApiError::MessageNotFound) | Err(ApiError::InvalidId(_)) => Ok(Some(true)),
        Err(e) => Err(e.into()),
    }
}

/// maildrop.cc's `Message`: built from a listing's summary or from a stored document.
pub struct Message {
    summary: MessageSummary,
    /// The stored document: given when the message was asked for by id, loaded on first use (and
    /// once) when an envelope field of a listing entry is asked for.
    detail: OnceCell<Option<StoredMessage>>,
    /// `data` and `html` are only given for a message asked for by id, as documented.
    full: bool,
}

impl Message {
    fn listed(summary: MessageSummary) -> Self {
        Self {
            summary,
            detail: OnceCell::new(),
            full: false,
        }
    }

    fn full(doc: StoredMessage) -> Self {
        Self {
            summary: doc.summary.clone(),
            detail: OnceCell::new_with(Some(Some(doc))),
            full: true,
        }
    }

    async fn detail(&self, ctx: &Context<'_>) -> Result<Option<&StoredMessage>, ResolveError> {
        let state = state(ctx)?;
        let doc = self
            .detail
            .get_or_try_init(|| state.mail.get(&self.summary.mailbox, &self.summary.id))
            .await?;
        Ok(doc.as_ref())
    }

    async fn envelope<T>(
        &self,
        ctx: &Context<'_>,
        field: impl FnOnce(&StoredMessage) -> T,
    ) -> async_graphql::Result<Option<T>> {
        self.detail(ctx)
            .await
            .map(|doc| doc.map(field))
            .map_err(ResolveError::into_graphql)
    }
}

#[Object]
impl Message {
    /// The message id (a ULID).
    async fn id(&self) -> Option<String> {
        Some(self.summary.id.to_string())
    }

    /// The IP address of the sending mail server.
    async fn ip(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        self.envelope(ctx, |d| d.envelope.client_ip.clone()).await
    }

    /// The name the sending server gave in HELO/EHLO.
    async fn helo(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        self.envelope(ctx, |d| d.envelope.helo.clone()).await
    }

    /// When the message was received, ISO 8601 in UTC.
    async fn date(&self) -> Option<String> {
        Some(iso_date(self.summary.received_ms))
    }

    /// The envelope sender (MAIL FROM); empty for a null sender.
    async fn mailfrom(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        self.envelope(ctx, |d| d.envelope.mail_from.clone()).await
    }

    /// The envelope recipients (RCPT TO), as the sending server wrote them.
    async fn rcptto(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<Vec<Option<String>>>> {
        self.envelope(ctx, |d| {
            d.envelope.rcpt_to.iter().cloned().map(Some).collect()
        })
        .await
    }

    /// The `From:` header (the envelope sender when there is none).
    async fn headerfrom(&self) -> Option<String> {
        Some(self.summary.from.clone())
    }

    /// The `Subject:` header.
    async fn subject(&self) -> Option<String> {
        Some(self.summary.subject.clone())
    }

    /// The raw message as received; only for a message asked for by id.
    #[graphql(complexity = "STORE_COST")]
    async fn data(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        if !self.full {
            return Ok(None);
        }
        let raw = async {
            let state = state(ctx)?;
            Ok::<_, ResolveError>(
                state
                    .mail
                    .raw(&self.summary.mailbox, &self.summary.id)
                    .await?,
            )
        }
        .await
        .map_err(ResolveError::into_graphql)?;
        Ok(raw.map(|raw| String::from_utf8_lossy(&raw).into_owned()))
    }

    /// The sanitised HTML body, or the plain-text body (escaped) when there is no HTML; only for a
    /// message asked for by id.
    async fn html(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        if !self.full {
            return Ok(None);
        }
        Ok(self.envelope(ctx, html_or_text).await?.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDL lines maildrop.cc documents, as async-graphql prints them.
    #[test]
    fn the_schema_is_the_documented_one() {
        let sdl = schema().sdl();
        for line in [
            "ping(message: String): String",
            "inbox(mailbox: String): [Message]",
            "message(mailbox: String, id: String): Message",
            "altinbox(mailbox: String): String",
            "statistics: Statistics",
            "status: String",
            "delete(mailbox: String, id: String): Boolean",
            "type Statistics {",
            "blocked: Int",
            "saved: Int",
            "type Message {",
            "rcptto: [String]",
        ] {
            assert!(sdl.contains(line), "missing `{line}` in:\n{sdl}");
        }
        for field in [
            "id",
            "ip",
            "helo",
            "date",
            "mailfrom",
            "headerfrom",
            "subject",
            "data",
            "html",
        ] {
            assert!(
                sdl.contains(&format!("\t{field}: String\n")),
                "Message.{field} in:\n{sdl}"
            );
        }
        assert!(sdl.contains("type Query {") && sdl.contains("type Mutation {"));
    }

    #[tokio::test]
    async fn ping_echoes_as_documented() {
        // The documentation's sample, character for character.
        let query = "query PingSample {\n    ping(message: \"Hello, world!\")\n}";
        let response = schema().execute(query).await;
        let json = serde_json::to_value(&response).expect("serialisable");
        assert_eq!(
            json,
            serde_json::json!({"data": {"ping": "pong Hello, world!"}})
        );
    }

    #[tokio::test]
    async fn introspection_fits_within_the_limits() {
        let response = schema().execute(INTROSPECTION).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
    }

    #[tokio::test]
    async fn fan_out_is_refused() {
        let fields: String = (0..40)
            .map(|i| format!("a{i}: inbox(mailbox: \"x\") {{ id }} "))
            .collect();
        let response = schema().execute(format!("{{ {fields} }}")).await;
        assert!(
            response
                .errors
                .iter()
                .any(|e| e.message.contains("complex")),
            "{:?}",
            response.errors
        );
    }

    #[test]
    fn mutations_are_recognised() {
        assert!(has_mutation(
            "mutation Example { delete(mailbox:\"a\", id:\"b\") }"
        ));
        assert!(has_mutation(
            "query A { status } mutation B { delete(mailbox:\"a\", id:\"b\") }"
        ));
        assert!(!has_mutation("query Example { status }"));
        assert!(!has_mutation("{ status }"));
        assert!(!has_mutation("this is not graphql"));
    }

    /// The introspection query GraphiQL and most client generators send.
    const INTROSPECTION: &str = r#"
    query IntrospectionQuery {
      __schema {
        queryType { name } mutationType { name } subscriptionType { name }
        types { ...FullType }
        directives { name description locations args { ...InputValue } }
      }
    }
    fragment FullType on __Type {
      kind name description
      fields(includeDeprecated: true) {
        name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
      }
      inputFields { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type {
      kind name
      ofType { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name } } } } } } }
    }
    "#;
}
