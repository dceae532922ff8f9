# dicomecho next to a twisted.web health page, in one process:
#
#     twistd -ny examples/dicomecho_web.tac
#
# DICOMECHO_LISTEN and HEALTH_LISTEN (endpoint descriptions) override the
# defaults tcp:11112 and tcp:8080:interface=127.0.0.1.
import os

from twisted.application import service, strports
from twisted.logger import ILogObserver
from twisted.web import resource, server

from dicomecho import DICOMServerFactory
from dicomecho.logs import consoleObserver


class Health(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"ok\n"


application = service.Application("dicomecho+health")
application.setComponent(ILogObserver, consoleObserver())
top = service.MultiService()
top.setServiceParent(application)
strports.service(
    os.environ.get("DICOMECHO_LISTEN", "tcp:11112"),
    DICOMServerFactory("ECHOSCP"),
).setServiceParent(top)
strports.service(
    os.environ.get("HEALTH_LISTEN", "tcp:8080:interface=127.0.0.1"),
    server.Site(Health()),
).setServiceParent(top)
