//! The pingora stream traits a connection wrapper passes straight to the connection it
//! wraps. `Replay` (worker side) and `Sniff` (client side) each change only how bytes are
//! read (and `Sniff` how bytes are written); shutdown, ids, digests and peeking are the inner
//! stream's, written once here.

/// Implements `AsyncWrite`, `Shutdown`, `UniqueID`, `GetTimingDigest`, `GetProxyDigest`,
/// `GetSocketDigest` and `Peek` for `$wrapper` by delegating to its `inner: Stream` field.
macro_rules! delegate_to_inner {
    ($wrapper:ty) => {
        $crate::forward::wrapped::delegate_writes_to_inner!($wrapper);
        $crate::forward::wrapped::delegate_all_but_writes_to_inner!($wrapper);
    };
}

/// Implements `AsyncWrite` for `$wrapper` by delegating to its `inner: Stream` field.
macro_rules! delegate_writes_to_inner {
    ($wrapper:ty) => {
        impl tokio::io::AsyncWrite for $wrapper {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                tokio::io::AsyncWrite::poll_write(
                    std::pin::Pin::new(&mut self.get_mut().inner),
                    cx,
                    buf,
                )
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut self.get_mut().inner), cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_shutdown(
                    std::pin::Pin::new(&mut self.get_mut().inner),
                    cx,
                )
            }
        }
    };
}

/// Implements `Shutdown`, `UniqueID`, `GetTimingDigest`, `GetProxyDigest`,
/// `GetSocketDigest` and `Peek` for `$wrapper` by delegating to its `inner: Stream` field.
macro_rules! delegate_all_but_writes_to_inner {
    ($wrapper:ty) => {
        #[async_trait::async_trait]
        impl pingora_core::protocols::Shutdown for $wrapper {
            async fn shutdown(&mut self) {
                pingora_core::protocols::Shutdown::shutdown(&mut *self.inner).await
            }
        }

        impl pingora_core::protocols::UniqueID for $wrapper {
            fn id(&self) -> pingora_core::protocols::UniqueIDType {
                pingora_core::protocols::UniqueID::id(&*self.inner)
            }
        }

        impl pingora_core::protocols::GetTimingDigest for $wrapper {
            fn get_timing_digest(&self) -> Vec<Option<pingora_core::protocols::TimingDigest>> {
                pingora_core::protocols::GetTimingDigest::get_timing_digest(&*self.inner)
            }
        }

        impl pingora_core::protocols::GetProxyDigest for $wrapper {
            fn get_proxy_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora_core::protocols::raw_connect::ProxyDigest>> {
                pingora_core::protocols::GetProxyDigest::get_proxy_digest(&*self.inner)
            }
        }

        impl pingora_core::protocols::GetSocketDigest for $wrapper {
            fn get_socket_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora_core::protocols::SocketDigest>> {
                pingora_core::protocols::GetSocketDigest::get_socket_digest(&*self.inner)
            }
        }

        #[async_trait::async_trait]
        impl pingora_core::protocols::Peek for $wrapper {}
    };
}

pub(super) use delegate_all_but_writes_to_inner;
pub(super) use delegate_to_inner;
pub(super) use delegate_writes_to_inner;
