//! A frontend's page services around the request path: the page cache
//! ([`crate::cache`]) answers before a server is chosen, and CDN rewriting
//! ([`crate::cdn`]) then caching apply to what the server answers.

pub mod metrics;

use std::sync::Arc;

use http::{Request, Response, header};

use crate::cache::{Before, PageCache, Pending};
use crate::cdn::Cdn;
use crate::config::FrontendConfig;
use crate::proxy::ProxyBody;

/// CDN rewriting and the page cache of one frontend (either may be absent).
#[derive(Debug)]
pub struct Pages {
    /// CDN rewriting.
    pub cdn: Option<Arc<Cdn>>,
    /// The page cache.
    pub cache: Option<Arc<PageCache>>,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Step {
    /// Answer it with this (from the cache).
    Answer(Response<ProxyBody>),
    /// Route it, then hand the response to [`Pages::after`].
    Forward(Forwarded),
}

/// A request on its way to a server.
#[derive(Debug)]
pub struct Forwarded {
    host: String,
    /// A `HEAD` request: its response has no body to rewrite.
    head: bool,
    cache: Option<Pending>,
}

/// The host a request names (authority of its target, else `Host`).
fn host_of<B>(req: &Request<B>) -> String {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

impl Pages {
    /// The frontend's page services, if it configures any.
    pub fn new(cfg: &FrontendConfig) -> Option<Pages> {
        let cdn = cfg.cdn.as_ref().map(|c| Arc::new(Cdn::new(c)));
        let cache = cfg.cache.as_ref().map(|c| Arc::new(PageCache::new(c)));
        (cdn.is_some() || cache.is_some()).then_some(Pages { cdn, cache })
    }

    /// Before routing: a cached answer, or what [`Pages::after`] needs.
    pub fn before<B>(&self, req: &Request<B>) -> Step {
        let host = host_of(req);
        let cache = match self.cache.as_ref().map(|c| c.before(req, &host)) {
            Some(Before::Hit(resp)) => return Step::Answer(resp),
            Some(Before::Miss(p)) => Some(p),
            Some(Before::Bypass) | None => None,
        };
        let head = req.method() == http::Method::HEAD;
        Step::Forward(Forwarded { host, head, cache })
    }

    /// After the server answered: rewrite, then store on the way to the client.
    pub fn after(&self, f: Forwarded, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let resp = match &self.cdn {
            Some(cdn) if !f.head => crate::cdn::stream::apply(cdn, &f.host, resp),
            _ => resp,
        };
        match (&self.cache, f.cache) {
            (Some(c), Some(p)) => c.after(p, resp),
            _ => resp,
        }
    }
}
