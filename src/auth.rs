//! API keys with roles. Once any key is configured, every gRPC call and HTTP
//! request needs `authorization: Bearer <key>`; the server keeps only the
//! SHA-256 of each key and compares in constant time. Liveness, readiness and
//! gRPC health stay open for probes.

use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// ComplianceGateway (CheckCall, ScreenNumbers).
    Dialer,
    /// ContactRecords.
    Crm,
    /// HTTP status, metrics and page.
    Supervisor,
    /// Everything.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "dialer" => Some(Role::Dialer),
            "crm" => Some(Role::Crm),
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// One configured key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    pub sha256: [u8; 32],
    pub roles: Vec<Role>,
    /// The controllers whose contact records the key may write and read
    /// (`controllers = [...]`); `None`: every controller.
    pub controllers: Option<std::sync::Arc<[String]>>,
}

/// Why a request was refused (its gRPC code and HTTP status come from
/// [`crate::error::HasKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key, or a key that is not configured: UNAUTHENTICATED / 401.
    #[error("missing or unknown API key")]
    Unauthenticated,
    /// A valid key without the role: PERMISSION_DENIED / 403.
    #[error("this API key lacks the role for this service")]
    Forbidden,
}

/// The key a request was authenticated with, passed to handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    /// See [`ApiKey::controllers`].
    pub controllers: Option<std::sync::Arc<[String]>>,
}

impl Caller {
    /// Refuses a request for a controller outside the key's `controllers`
    /// (an empty one, "every controller", included): a contact-records
    /// call, or a check or screen of the controller's campaign. Without
    /// it, one brand's CRM key recorded consents in another brand's name,
    /// which its campaigns then dialled on (found by review), and one
    /// brand's dialer got ALLOWs on another brand's campaign.
    ///
    /// # Errors
    /// [`OutOfScope`] naming the controller and the key.
    pub fn speaks_for(&self, controller: &str) -> Result<(), OutOfScope> {
        // Read as the records service reads it (`ContactService` trims).
        let controller = controller.trim();
        match &self.controllers {
            Some(allowed) if !allowed.iter().any(|c| c == controller) => Err(OutOfScope {
                key: self.name.clone(),
                controller: controller.to_string(),
                allowed: allowed.join(", "),
            }),
            _ => Ok(()),
        }
    }
}

/// A request for a controller the key may not speak for: PERMISSION_DENIED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "controller: API key {key:?} may not act for controller {controller:?} (its controllers: {allowed})"
)]
pub struct OutOfScope {
    key: String,
    controller: String,
    allowed: String,
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

impl ApiKeys {
    pub fn new(keys: Vec<ApiKey>) -> ApiKeys {
        ApiKeys { keys }
    }

    /// True when requests must carry a key.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks an `authorization` header value for `role`; returns the key.
    ///
    /// # Errors
    /// [`AuthError`] saying whether the caller is unknown or lacks the role.
    pub fn check(
        &self,
        authorization: Option<&str>,
        role: Option<Role>,
    ) -> Result<Option<Caller>, AuthError> {
        if !self.enabled() {
            return Ok(None);
        }
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or(AuthError::Unauthenticated)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Compare against every key, without an early exit, so timing does not
        // reveal which key (or how much of one) matched.
        let mut found: Option<&ApiKey> = None;
        for key in &self.keys {
            let difference = key
                .sha256
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(key);
            }
        }
        let key = found.ok_or(AuthError::Unauthenticated)?;
        match role {
            Some(role) if !key.roles.iter().any(|r| *r == role || *r == Role::Admin) => {
                Err(AuthError::Forbidden)
            }
            _ => Ok(Some(Caller {
                name: key.name.clone(),
                controllers: key.controllers.clone(),
            })),
        }
    }
}

/// The role a gRPC method needs; `None` = any valid key; health is open.
/// Reflection takes any valid key; any other service (one added later)
/// the admin role until it is listed here.
pub fn grpc_role(path: &str) -> Option<Option<Role>> {
    if path.starts_with("/grpc.health.v1.Health/") {
        None
    } else if path.starts_with("/dialgate.v1.ComplianceGateway/") {
        Some(Some(Role::Dialer))
    } else if path.starts_with("/dialgate.v1.ContactRecords/") {
        Some(Some(Role::Crm))
    } else if path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        Some(None)
    } else {
        Some(Some(Role::Admin))
    }
}

/// The gRPC server layer enforcing [`ApiKeys`].
#[derive(Debug, Clone)]
pub struct GrpcAuthLayer {
    pub keys: std::sync::Arc<ApiKeys>,
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            keys: std::sync::Arc::clone(&self.keys),
        }
    }
}

/// See [`GrpcAuthLayer`].
#[derive(Debug, Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    keys: std::sync::Arc<ApiKeys>,
}

impl<S, B> tower::Service<http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let decision = match grpc_role(request.uri().path()) {
            None => Ok(None),
            Some(role) => {
                let header = request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                self.keys.check(header, role)
            }
        };
        match decision {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(request).await })
            }
            Err(error) => {
                let status = crate::error::grpc_status(&error);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_a_service_not_listed_needs_the_admin_role() {
        assert_eq!(grpc_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            grpc_role("/dialgate.v1.ComplianceGateway/CheckCall"),
            Some(Some(Role::Dialer))
        );
        assert_eq!(
            grpc_role("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some(None)
        );
        assert_eq!(
            grpc_role("/dialgate.v1.SomethingNew/Do"),
            Some(Some(Role::Admin))
        );
    }

    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys::new(vec![
            ApiKey {
                name: "floor-1".into(),
                sha256: Sha256::digest(b"dialer-secret").into(),
                roles: vec![Role::Dialer],
                controllers: None,
            },
            ApiKey {
                name: "ops".into(),
                sha256: Sha256::digest(b"admin-secret").into(),
                roles: vec![Role::Admin],
                controllers: None,
            },
        ])
    }

    fn caller(name: &str) -> Caller {
        Caller {
            name: name.into(),
            controllers: None,
        }
    }

    #[test]
    fn test_a_scoped_key_speaks_only_for_its_controllers() {
        let scoped = Caller {
            name: "beta-crm".into(),
            controllers: Some(vec!["beta".to_string()].into()),
        };
        assert!(scoped.speaks_for("beta").is_ok());
        let refused = scoped.speaks_for("acme").unwrap_err().to_string();
        assert!(
            refused.contains("\"acme\"") && refused.contains("beta-crm"),
            "{refused}"
        );
        // "Every controller" (an empty controller) is outside any scope.
        assert!(scoped.speaks_for("").is_err());
        assert!(scoped.speaks_for("Beta").is_err());
        // Padded as the service would trim it: the same controller.
        assert!(scoped.speaks_for(" beta\t").is_ok());
        assert!(scoped.speaks_for("  ").is_err());
        assert!(caller("ops").speaks_for("acme").is_ok());
    }

    #[test]
    fn test_auth_matrix() {
        let keys = keys();
        assert_eq!(
            keys.check(None, Some(Role::Dialer)),
            Err(AuthError::Unauthenticated)
        );
        assert_eq!(
            keys.check(Some("Bearer nope"), Some(Role::Dialer)),
            Err(AuthError::Unauthenticated)
        );
        assert_eq!(
            keys.check(Some("dialer-secret"), Some(Role::Dialer)),
            Err(AuthError::Unauthenticated)
        );
        assert_eq!(
            keys.check(Some("Bearer dialer-secret"), Some(Role::Crm)),
            Err(AuthError::Forbidden)
        );
        assert_eq!(
            keys.check(Some("Bearer dialer-secret"), Some(Role::Dialer)),
            Ok(Some(caller("floor-1")))
        );
        assert_eq!(
            keys.check(Some("Bearer admin-secret"), Some(Role::Crm)),
            Ok(Some(caller("ops")))
        );
        assert_eq!(
            keys.check(Some("Bearer dialer-secret"), None),
            Ok(Some(caller("floor-1")))
        );
        assert_eq!(ApiKeys::default().check(None, Some(Role::Admin)), Ok(None));
    }
}
