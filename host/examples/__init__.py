"""Example programs of the host driver, run against the virtual NIC (``toe sim``).

- :mod:`host.examples.echo_server`: an echo server (RFC 862) on the engine.
- :mod:`host.examples.http_server`: an HTTP/1.1 server that serves files.
- :mod:`host.examples.client`: a client that connects out, sends, half-closes and reads.
"""
