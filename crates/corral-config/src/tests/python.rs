//! App pools: `app`, `interface`, `python` and their conflicts.

use super::*;

#[test]
fn an_app_pool_takes_the_place_of_a_command() {
    let c = ok("[pools.web]\napp = \"mysite.wsgi:application\"\ncwd = \"/srv/app\"\nworkers = 4\n");
    let p = &c.pools[0];
    let app = p.app.as_ref().expect("an app pool");
    assert_eq!(app.target, "mysite.wsgi:application");
    assert_eq!(app.interface, Interface::Wsgi);
    assert_eq!(app.python_written, DEFAULT_PYTHON);
    assert!(app.python.is_absolute(), "{:?}", app.python);
    assert!(p.command.is_empty());
    // corral binds an app pool's sockets itself: Unix ones unless told.
    assert_eq!(p.bind, Bind::Unix);
    let text = render(&c);
    assert!(
        text.contains("app = \"mysite.wsgi:application\"\ninterface = \"wsgi\""),
        "{text}"
    );
}

#[test]
fn app_and_command_are_exclusive() {
    let e = errs("[pools.web]\ncommand = [\"app\"]\napp = \"a:b\"\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("corral.toml:2:11: pools.web.command: and `app` are exclusive"),
        "{e:#?}"
    );
}

#[test]
fn a_missing_interpreter_is_an_error_at_its_key() {
    let e = errs("[pools.web]\napp = \"a:b\"\npython = \"/nonexistent/bin/python\"\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("corral.toml:3:10: pools.web.python: \"/nonexistent/bin/python\" is not an executable file"), "{e:#?}");
    let e = errs("[pools.web]\napp = \"a:b\"\npython = \"no-such-python-here\"\n");
    assert!(
        e[0].contains("pools.web.python: \"no-such-python-here\" is not found on PATH"),
        "{e:#?}"
    );
}

#[test]
fn app_keys_need_an_app() {
    let e = errs("[pools.web]\ncommand = [\"app\"]\ninterface = \"asgi\"\n");
    assert!(
        e[0].contains("pools.web.interface: only applies to a pool with `app`"),
        "{e:#?}"
    );
    let e = errs("[pools.web]\napp = \"my-site:app\"\ninterface = \"rack\"\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    let e = errs("[pools.web]\nupstreams = [\"127.0.0.1:9\"]\napp = \"a:b\"\n");
    assert!(
        e[0].contains("pools.web.app: applies to workers corral starts"),
        "{e:#?}"
    );
}
