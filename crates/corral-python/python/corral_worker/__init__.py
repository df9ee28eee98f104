"""corral's Python side: the template that preloads an app and forks workers, and the
servers those workers run (``wsgi``, ``asgi``). Standard library only; corral writes this
package to its runtime dir and puts it first on the template's ``PYTHONPATH``."""
