//! The HTTP API's request and answer bodies, and the checks that turn a bad request into a
//! 4xx with `{"error": "..."}` naming the field.

use crate::search::{Hit, SearchError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request that cannot be answered: the status and the message sent as `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status (4xx for the client's mistakes, 5xx for the service's).
    pub status: StatusCode,
    /// What went wrong, naming the field.
    pub message: String,
}

impl ApiError {
    /// A 400 Bad Request.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// An error of the service itself (500).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// 503: the service cannot take the request now.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    /// A search error: about the request field it concerns (`plan`, `width`, `k`), else
    /// about the query `field`.
    pub fn search(field: &str, e: SearchError) -> ApiError {
        let field = match e {
            SearchError::Plan(_) => "plan",
            SearchError::Width { .. } => "width",
            SearchError::ZeroK => "k",
            _ => field,
        };
        ApiError::bad(format!("{field}: {e}"))
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&ErrorBody {
            error: &self.message,
        })
        .unwrap_or_else(|_| "{\"error\":\"unprintable error\"}".into());
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

/// Parses a JSON body; an error names the field where it happened (`vectors[2][5]: invalid
/// type: string "x", expected f32`), or says the JSON is malformed.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if (inner.is_syntax() || inner.is_eof()) && path == "." {
            ApiError::bad(format!("malformed JSON: {inner}"))
        } else if inner.is_syntax() || inner.is_eof() {
            ApiError::bad(format!("{path}: malformed JSON: {inner}"))
        } else if path == "." {
            ApiError::bad(format!("request body: {inner}"))
        } else {
            ApiError::bad(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn default_k() -> usize {
    10
}

/// `POST /v1/search`: one `vector` or a batch of `vectors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// One query vector at the index's full dimension.
    pub vector: Option<Vec<f32>>,
    /// Several query vectors.
    pub vectors: Option<Vec<Vec<f32>>>,
    /// Results per query.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Answer as this Matryoshka width (`null`: full).
    pub width: Option<usize>,
    /// A cascade plan (`null`: the index's default).
    pub plan: Option<String>,
    /// Beam width of the coarse graph search.
    pub ef: Option<usize>,
    /// Ids never returned.
    #[serde(default)]
    pub exclude: Vec<u64>,
    /// If given, only these ids may be returned.
    pub allow: Option<Vec<u64>>,
}

/// `POST /v1/recommend`: a history of item ids, oldest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    /// Item ids, oldest first.
    pub history: Vec<u64>,
    /// Results.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Also recommend items already in the history.
    #[serde(default)]
    pub keep_history: bool,
    /// Answer as this Matryoshka width (`null`: full).
    pub width: Option<usize>,
    /// A cascade plan (`null`: the index's default).
    pub plan: Option<String>,
    /// Beam width of the coarse graph search.
    pub ef: Option<usize>,
}

/// `POST /v1/users/{user}/events`: new interactions, oldest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// Item ids, oldest first.
    pub items: Vec<u64>,
}

/// The `k` query parameter of `GET /v1/users/{user}/recommendations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsQuery {
    /// Results.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Also recommend items already in the history.
    #[serde(default)]
    pub keep_history: bool,
}

/// One answer: ids and scores, best first.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Answer {
    /// Item ids.
    pub ids: Vec<u64>,
    /// Inner products with the query.
    pub scores: Vec<f32>,
}

impl Answer {
    /// The answer of `hits`.
    pub fn of(hits: &[Hit]) -> Answer {
        Answer {
            ids: hits.iter().map(|h| h.id).collect(),
            scores: hits.iter().map(|h| h.score).collect(),
        }
    }
}

/// The answer of a batch of vectors.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchAnswer {
    /// One answer per vector, in order.
    pub results: Vec<Answer>,
}

/// Checks `k` against the service's limit.
pub fn check_k(k: usize, max_k: usize) -> Result<(), ApiError> {
    if k == 0 || k > max_k {
        return Err(ApiError::bad(format!(
            "k: {k} is not between 1 and {max_k}"
        )));
    }
    Ok(())
}

/// Checks one query vector's length.
pub fn check_dim(field: &str, v: &[f32], dim: usize) -> Result<(), ApiError> {
    if v.len() != dim {
        return Err(ApiError::bad(format!(
            "{field}: expected {dim} values (the index's dimension), got {}",
            v.len()
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(ApiError::bad(format!(
            "{field}[{i}]: {} is not a finite number",
            v[i]
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = parse::<SearchRequest>(br#"{"vectors": [[1, 2], [3, "x"]]}"#).unwrap_err();
        assert!(
            e.message.starts_with("vectors[1][1]: invalid type"),
            "{}",
            e.message
        );
        let e = parse::<SearchRequest>(br#"{"vector": [1, 2], "k": -1}"#).unwrap_err();
        assert!(e.message.starts_with("k: invalid value"), "{}", e.message);
        let e = parse::<SearchRequest>(br#"{"vector": [1, 2], "kk": 3}"#).unwrap_err();
        assert!(e.message.contains("unknown field `kk`"), "{}", e.message);
        let e = parse::<SearchRequest>(br#"{"vector": [1, 2"#).unwrap_err();
        assert!(e.message.contains("malformed JSON"), "{}", e.message);
        let e = parse::<SearchRequest>(br#"{"vector": [1e999]}"#).unwrap_err();
        assert!(
            e.message
                .starts_with("vector[0]: malformed JSON: number out of range"),
            "{}",
            e.message
        );
        let e = parse::<SearchRequest>(br#"{"vector": [1]} x"#).unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        let e = parse::<RecommendRequest>(br#"{"k": 3}"#).unwrap_err();
        assert!(
            e.message.contains("missing field `history`"),
            "{}",
            e.message
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let ok = parse::<SearchRequest>(br#"{"vector": [1.5, 2]}"#).unwrap();
        assert_eq!(ok.k, 10);
        assert_eq!(ok.vector, Some(vec![1.5, 2.0]));
    }

    #[test]
    fn k_and_vectors_are_checked() {
        assert!(check_k(0, 100).unwrap_err().message.starts_with("k: 0"));
        assert!(check_k(101, 100).is_err());
        check_k(100, 100).unwrap();
        let e = check_dim("vector", &[1.0, 2.0], 3).unwrap_err();
        assert_eq!(
            e.message,
            "vector: expected 3 values (the index's dimension), got 2"
        );
        let e = check_dim("vectors[4]", &[1.0, f32::INFINITY], 2).unwrap_err();
        assert_eq!(e.message, "vectors[4][1]: inf is not a finite number");
    }
}
