//! The Python side of an app pool, shipped inside the binary: `python/corral_worker/` is a
//! pure-stdlib package (`http.py`, `wsgi.py`, `asgi.py`: what a worker runs; `standalone.py`:
//! one worker without a template). `build.rs` embeds every file of it as [`FILES`].

include!(concat!(env!("OUT_DIR"), "/files.rs"));
