# dicomecho next to a twisted.web health page, Prometheus metrics and the
# live page of recent connections, in one process:
#
#     twistd -ny examples/dicomecho_web.tac
#
# DICOMECHO_LISTEN and HEALTH_LISTEN (endpoint descriptions) override the
# defaults tcp:11112 and tcp:8080:interface=127.0.0.1. The web side serves
# /health ("ok", or 503 "draining" while shutting down), /metrics (with
# the metrics extra, pip install 'dicomecho[metrics]') and /live/, the live
# page (README, The live page).
import os

from twisted.application import service, strports
from twisted.logger import ILogObserver
from twisted.web import resource, server

from dicomecho import DICOMServerFactory
from dicomecho.logs import consoleObserver
from dicomecho.observability.history import AssociationHistory
from dicomecho.web.resources import liveResource


class Health(resource.Resource):
    isLeaf = True

    def __init__(self, factory):
        super().__init__()
        self.factory = factory

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        if self.factory.draining:
            request.setResponseCode(503)
            return b"draining\n"
        return b"ok\n"


dicom = DICOMServerFactory("ECHOSCP", history=AssociationHistory(1000))
web = resource.Resource()
web.putChild(b"health", Health(dicom))
web.putChild(b"live", liveResource(dicom.history, lambda: dicom.activeAssociations))
try:
    from dicomecho.metrics import metricsResource

    web.putChild(b"metrics", metricsResource(dicom))
except ImportError:  # prometheus_client is not installed: no /metrics
    pass

application = service.Application("dicomecho+web")
application.setComponent(ILogObserver, consoleObserver())
top = service.MultiService()
top.setServiceParent(application)
strports.service(os.environ.get("DICOMECHO_LISTEN", "tcp:11112"), dicom).setServiceParent(top)
strports.service(
    os.environ.get("HEALTH_LISTEN", "tcp:8080:interface=127.0.0.1"), server.Site(web)
).setServiceParent(top)
