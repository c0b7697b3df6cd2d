"""moto's S3 (and every other service it mocks) as a WSGI app, for a server that keeps connections
alive (``granian --interface wsgi bench.moto_wsgi:app``): moto's own server (werkzeug) closes every
connection after one answer, so a client would pay a TCP connect per request, as it does not on AWS,
MinIO or Ceph RGW."""
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

app = DomainDispatcherApplication(create_backend_app)
