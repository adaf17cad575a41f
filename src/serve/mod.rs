//! `mrl-index serve`: the index (and the query encoder) behind HTTP.
//!
//! ```text
//! request ─► axum (tokio threads: parse, check, answer) ─► search pool (rayon, --threads)
//!                                                             │ Index::search_filtered
//!            index: Arc<Index> behind a lock, swapped whole by a reload; a request holds
//!            the Arc it started with, so requests in flight finish on the old index
//! ```
//!
//! Endpoints: `POST /v1/search`, `POST /v1/recommend`, `POST /v1/users/{user}/events`,
//! `GET /v1/users/{user}/recommendations`, `GET /livez`, `GET /readyz`, `GET /metrics`,
//! `POST /admin/reload`. Searches and encodings never run on the async runtime's threads:
//! they go to a rayon pool of `--threads` threads, at most `queue` of them waiting (more are
//! answered 503). Every bad request gets a 4xx with `{"error": "..."}` naming the field; a
//! panic inside a search is caught and answered 500.

pub mod api;
pub mod metrics;
pub mod users;

use crate::encoder::{EncoderError, QueryEncoder};
use crate::index::{Index, IndexError};
use crate::plan::SearchPlan;
use crate::search::{Filter, SearchParams};
use api::{check_dim, check_k, parse, Answer, ApiError, BatchAnswer};
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use users::Users;

/// Errors that stop the service from starting (requests never stop it).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The index could not be opened.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The query encoder could not be loaded.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The search pool could not start.
    #[error(transparent)]
    Pool(#[from] crate::threads::ThreadPoolError),
    /// The user state file could not be read or written.
    #[error(transparent)]
    Users(#[from] users::UsersError),
    /// The server failed while running.
    #[error("server error: {0}")]
    Server(std::io::Error),
}

/// Limits on what one request may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest `k`.
    pub max_k: usize,
    /// The most vectors in one `/v1/search` request.
    pub max_batch: usize,
    /// The largest request body in bytes.
    pub max_body: usize,
    /// The most item ids in one history or events request.
    pub max_history: usize,
    /// Searches (or encodings) waiting for the pool before new ones are refused with 503.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_k: 1000,
            max_batch: 1024,
            max_body: 16 << 20,
            max_history: 10_000,
            queue: 4096,
        }
    }
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The index directory (reloads open its current generation).
    pub index: PathBuf,
    /// The query encoder (`query_encoder.onnx`), for `/v1/recommend` and the user endpoints.
    pub encoder: Option<PathBuf>,
    /// Search threads (0: one per core).
    pub threads: usize,
    /// The most user states held in memory; the least recently used is evicted beyond it.
    pub max_users: usize,
    /// Where user states are loaded from at start (if it exists) and saved to at shutdown.
    pub state_file: Option<PathBuf>,
    /// Request limits.
    pub limits: Limits,
}

impl ServeOptions {
    /// Options for `index` with the defaults: no encoder, all cores, 100,000 users, no state
    /// file, [`Limits::default`].
    pub fn new(index: impl Into<PathBuf>) -> ServeOptions {
        ServeOptions {
            index: index.into(),
            encoder: None,
            threads: 0,
            max_users: 100_000,
            state_file: None,
            limits: Limits::default(),
        }
    }
}

/// The running service's state, shared by every request.
pub struct Service {
    dir: PathBuf,
    index: RwLock<Arc<Index>>,
    encoder: Option<Arc<QueryEncoder>>,
    pool: rayon::ThreadPool,
    waiting: tokio::sync::Semaphore,
    reload_lock: tokio::sync::Mutex<()>,
    metrics: Metrics,
    users: Users,
    draining: AtomicBool,
    limits: Limits,
    state_file: Option<PathBuf>,
}

impl Service {
    /// Opens the index and the encoder, loads the user states, starts the search pool.
    pub fn open(options: &ServeOptions) -> Result<Service, ServeError> {
        let index = Index::open(&options.index)?;
        let encoder = options
            .encoder
            .as_deref()
            .map(QueryEncoder::open)
            .transpose()?;
        if let Some(e) = &encoder {
            if e.dim() != index.dim() {
                return Err(ServeError::Encoder(EncoderError::DimensionMismatch {
                    what: "index vectors for the query encoder",
                    expected: e.dim(),
                    got: index.dim(),
                }));
            }
        }
        let model = match &options.encoder {
            Some(path) => users::model_fingerprint(path)?,
            None => 0,
        };
        let users = Users::new(options.max_users, model);
        if let Some(path) = options.state_file.as_deref().filter(|p| p.exists()) {
            users.load(path, encoder.as_ref())?;
        }
        Ok(Service {
            dir: options.index.clone(),
            index: RwLock::new(Arc::new(index)),
            encoder: encoder.map(Arc::new),
            pool: crate::threads::pool(options.threads)?,
            waiting: tokio::sync::Semaphore::new(options.limits.queue),
            reload_lock: tokio::sync::Mutex::new(()),
            metrics: Metrics::default(),
            users,
            draining: AtomicBool::new(false),
            limits: options.limits,
            state_file: options.state_file.clone(),
        })
    }

    /// The index now being served.
    pub fn index(&self) -> Arc<Index> {
        Arc::clone(&self.index.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Marks the service as draining: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Saves the user states to the state file, if one was given.
    pub fn save_users(&self) -> Result<(), ServeError> {
        if let Some(path) = &self.state_file {
            self.users.save(path)?;
        }
        Ok(())
    }

    /// Opens the index directory's current generation and swaps it in; on failure the old
    /// index keeps serving. Returns the new generation.
    pub async fn reload(self: &Arc<Self>) -> Result<u64, ApiError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let dir = self.dir.clone();
        let opened = tokio::task::spawn_blocking(move || Index::open(&dir))
            .await
            .map_err(|e| ApiError::internal(format!("reload task failed: {e}")));
        let result = match opened {
            Ok(Ok(index)) => {
                let generation = index.manifest().generation;
                let fits = self.encoder.as_ref().is_none_or(|e| e.dim() == index.dim());
                if fits {
                    *self.index.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(index);
                    Ok(generation)
                } else {
                    Err(ApiError::internal(format!(
                        "reload refused: the new index holds {}-d vectors, the query encoder {}-d; still serving the old index",
                        index.dim(),
                        self.encoder.as_ref().map_or(0, |e| e.dim())
                    )))
                }
            }
            Ok(Err(e)) => Err(ApiError::internal(format!(
                "reload failed, still serving the old index: {e}"
            ))),
            Err(e) => Err(e),
        };
        self.metrics.reload(result.is_ok());
        result
    }

    /// Runs `f` on the search pool and waits for it without blocking the runtime; 503 when
    /// too many are waiting, 500 if `f` panicked.
    async fn on_pool<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .waiting
            .try_acquire()
            .map_err(|_| ApiError::unavailable("too many requests waiting for the search pool"))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(out);
        });
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(ApiError::internal(
                "the search panicked (a bug: please report it)",
            )),
            Err(_) => Err(ApiError::internal("the search worker went away")),
        }
    }

    fn encoder(&self) -> Result<Arc<QueryEncoder>, ApiError> {
        self.encoder.clone().ok_or_else(|| ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            message: "no query encoder loaded: start the service with --encoder".into(),
        })
    }

    fn params(
        &self,
        width: Option<usize>,
        plan: Option<&str>,
        ef: Option<usize>,
    ) -> Result<SearchParams, ApiError> {
        let plan = plan
            .map(str::parse::<SearchPlan>)
            .transpose()
            .map_err(|e| ApiError::bad(format!("plan: {e}")))?;
        Ok(SearchParams { plan, ef, width })
    }
}

/// Reads a body of at most `limit` bytes: 413 with a JSON error beyond it.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body: larger than the limit of {limit} bytes"),
        })
}

type ApiResult = Result<Response, ApiError>;

async fn search(State(s): State<Arc<Service>>, body: Body) -> ApiResult {
    let body = read_body(body, s.limits.max_body).await?;
    let req: api::SearchRequest = parse(&body)?;
    check_k(req.k, s.limits.max_k)?;
    let index = s.index();
    let params = s.params(req.width, req.plan.as_deref(), req.ef)?;
    let (k, exclude, allow) = (req.k, req.exclude, req.allow);
    match (req.vector, req.vectors) {
        (Some(v), None) => {
            check_dim("vector", &v, index.dim())?;
            let hits = s
                .on_pool(move || {
                    let filter = Filter {
                        allow: allow.as_deref(),
                        deny: &exclude,
                    };
                    index.search_filtered(&v, k, &params, &filter)
                })
                .await?
                .map_err(|e| ApiError::search("vector", e))?;
            Ok(Json(Answer::of(&hits)).into_response())
        }
        (None, Some(vs)) => {
            if vs.len() > s.limits.max_batch {
                return Err(ApiError::bad(format!(
                    "vectors: {} vectors, at most {} per request",
                    vs.len(),
                    s.limits.max_batch
                )));
            }
            for (i, v) in vs.iter().enumerate() {
                check_dim(&format!("vectors[{i}]"), v, index.dim())?;
            }
            let results = s
                .on_pool(move || {
                    use rayon::prelude::*;
                    let filter = Filter {
                        allow: allow.as_deref(),
                        deny: &exclude,
                    };
                    vs.par_iter()
                        .enumerate()
                        .map(|(i, v)| {
                            index
                                .search_filtered(v, k, &params, &filter)
                                .map(|h| Answer::of(&h))
                                .map_err(|e| ApiError::search(&format!("vectors[{i}]"), e))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .await??;
            Ok(Json(BatchAnswer { results }).into_response())
        }
        (Some(_), Some(_)) => Err(ApiError::bad("vector, vectors: give one of them, not both")),
        (None, None) => Err(ApiError::bad(
            "vector: missing (give \"vector\": [...] or \"vectors\": [[...], ...])",
        )),
    }
}

fn encoder_api_error(field: &str, e: EncoderError) -> ApiError {
    match e {
        EncoderError::UnknownItem { id } => {
            ApiError::bad(format!("{field}: item id {id} is not in the index"))
        }
        EncoderError::EmptyHistory => {
            ApiError::bad(format!("{field}: empty; a query needs at least one item"))
        }
        EncoderError::Search(e) => ApiError::search(field, e),
        other => ApiError::internal(other.to_string()),
    }
}

async fn recommend(State(s): State<Arc<Service>>, body: Body) -> ApiResult {
    let body = read_body(body, s.limits.max_body).await?;
    let req: api::RecommendRequest = parse(&body)?;
    check_k(req.k, s.limits.max_k)?;
    check_history("history", &req.history, s.limits.max_history)?;
    let encoder = s.encoder()?;
    let index = s.index();
    let params = s.params(req.width, req.plan.as_deref(), req.ef)?;
    let (k, keep) = (req.k, req.keep_history);
    let hits = s
        .on_pool(move || encoder.recommend(&index, &req.history, k, &params, keep))
        .await?
        .map_err(|e| encoder_api_error("history", e))?;
    Ok(Json(Answer::of(&hits)).into_response())
}

fn check_history(field: &str, ids: &[u64], max: usize) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::bad(format!(
            "{field}: empty; give at least one item id"
        )));
    }
    if ids.len() > max {
        return Err(ApiError::bad(format!(
            "{field}: {} item ids, at most {max} per request",
            ids.len()
        )));
    }
    Ok(())
}

async fn events(
    State(s): State<Arc<Service>>,
    UrlPath(user): UrlPath<String>,
    body: Body,
) -> ApiResult {
    let body = read_body(body, s.limits.max_body).await?;
    let req: api::EventsRequest = parse(&body)?;
    check_history("items", &req.items, s.limits.max_history)?;
    let encoder = s.encoder()?;
    let index = s.index();
    let service = Arc::clone(&s);
    let seen = s
        .on_pool(move || {
            service
                .users
                .advance(&user, &req.items, &encoder, &index, &service.metrics)
        })
        .await??;
    Ok(Json(serde_json::json!({ "items_seen": seen })).into_response())
}

async fn recommendations(
    State(s): State<Arc<Service>>,
    UrlPath(user): UrlPath<String>,
    query: Result<Query<api::RecommendationsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| ApiError::bad(format!("query string: {}", e.body_text())))?;
    check_k(q.k, s.limits.max_k)?;
    s.encoder()?;
    let index = s.index();
    let service = Arc::clone(&s);
    let hits = s
        .on_pool(move || service.users.recommend(&user, &index, q.k, q.keep_history))
        .await??;
    Ok(Json(Answer::of(&hits)).into_response())
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<Service>>) -> Response {
    if s.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics_text(State(s): State<Arc<Service>>) -> Response {
    let index = s.index();
    let ready = !s.draining.load(Ordering::SeqCst);
    let text = s.metrics.render(
        index.manifest().generation,
        index.len(),
        s.users.len(),
        ready,
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn reload(State(s): State<Arc<Service>>) -> ApiResult {
    let generation = s.reload().await?;
    let index = s.index();
    Ok(Json(serde_json::json!({
        "generation": generation,
        "items": index.len(),
        "delta_segments": index.deltas().len(),
        "deleted": index.deleted_count(),
    }))
    .into_response())
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint (see the README's service section)".into(),
    }
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!(
            "{} {}: method not allowed",
            request.method(),
            request.uri().path()
        ),
    }
}

fn endpoint_of(path: &str) -> &'static str {
    match path {
        "/v1/search" => "search",
        "/v1/recommend" => "recommend",
        "/livez" => "livez",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/admin/reload" => "reload",
        p if p.starts_with("/v1/users/") && p.ends_with("/events") => "events",
        p if p.starts_with("/v1/users/") && p.ends_with("/recommendations") => "recommendations",
        _ => "other",
    }
}

async fn measure(State(s): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let endpoint = endpoint_of(request.uri().path());
    let start = Instant::now();
    let response = next.run(request).await;
    s.metrics
        .record(endpoint, response.status().as_u16(), start.elapsed());
    response
}

/// The service's routes over `service`.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/v1/search", post(search))
        .route("/v1/recommend", post(recommend))
        .route("/v1/users/{user}/events", post(events))
        .route("/v1/users/{user}/recommendations", get(recommendations))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/admin/reload", post(reload))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&service),
            measure,
        ))
        .with_state(service)
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains: `/readyz` turns
/// 503 at once, requests in flight finish, and the user states are saved.
pub async fn serve_until(
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let draining = Arc::clone(&service);
    axum::serve(listener, router(Arc::clone(&service)))
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.start_draining();
        })
        .await
        .map_err(ServeError::Server)?;
    service.save_users()
}

/// While the index loads: `/livez` answers, everything else is 503 `loading`.
fn loading_router() -> Router {
    Router::new()
        .route("/livez", get(livez))
        .fallback(|| async { ApiError::unavailable("loading") })
}

/// Runs the service on `addr`: listens at once (answering 503 `loading` until the index and
/// encoder are open), then serves; SIGHUP reloads the index, SIGTERM or SIGINT drains and
/// returns. Prints one line when listening and one when serving.
pub async fn run(options: ServeOptions, addr: SocketAddr) -> Result<(), ServeError> {
    let bind = |source| ServeError::Bind { addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    std_listener.set_nonblocking(true).map_err(bind)?;
    let local = std_listener.local_addr().map_err(bind)?;
    println!(
        "mrl-index serve: listening on http://{local}, loading {}",
        options.index.display()
    );
    // The loading phase serves on a clone of the socket, then hands it over: connections
    // that arrive in between wait in the backlog.
    let loading_listener =
        tokio::net::TcpListener::from_std(std_listener.try_clone().map_err(bind)?).map_err(bind)?;
    let (loaded, loaded_rx) = tokio::sync::oneshot::channel::<()>();
    let loading = tokio::spawn(async move {
        axum::serve(loading_listener, loading_router())
            .with_graceful_shutdown(async move {
                let _ = loaded_rx.await;
            })
            .await
    });
    let opened_options = options.clone();
    let opened = tokio::task::spawn_blocking(move || Service::open(&opened_options)).await;
    let _ = loaded.send(());
    let _ = loading.await;
    let service =
        Arc::new(opened.map_err(|e| ServeError::Server(std::io::Error::other(e.to_string())))??);
    let index = service.index();
    println!(
        "mrl-index serve: serving {} ({} items, generation {}{}, {} user states)",
        options.index.display(),
        index.len(),
        index.manifest().generation,
        if service.encoder.is_some() {
            ", with the query encoder"
        } else {
            ""
        },
        service.users.len()
    );
    drop(index);
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind)?;
    spawn_reload_on_sighup(Arc::clone(&service))?;
    serve_until(service, listener, shutdown_signal()).await
}

fn spawn_reload_on_sighup(service: Arc<Service>) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Server)?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match service.reload().await {
                Ok(g) => {
                    let index = service.index();
                    eprintln!(
                        "mrl-index serve: SIGHUP: now serving generation {g}: {} items, {} delta segments, {} deleted",
                        index.len(),
                        index.deltas().len(),
                        index.deleted_count()
                    )
                }
                Err(e) => eprintln!("mrl-index serve: SIGHUP: {}", e.message),
            }
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        // Without signal handlers the service runs until killed.
        _ => std::future::pending::<()>().await,
    }
    eprintln!("mrl-index serve: draining");
}
