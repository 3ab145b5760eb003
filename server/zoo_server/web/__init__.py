"""The web page of `zoo serve --http-port` and the JSON bridge it talks through.

`bridge` puts every zoo.v1 RPC on HTTP (`POST /api/v1/{Service}/{Method}`), `page` serves the
static front end at `/` and the settings its forms are built from. Both join the Open
Inference Protocol's routes in one Starlette app (zoo_server.oip.http.build_app), behind the
same bearer token and TLS.
"""
