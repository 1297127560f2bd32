#!/usr/bin/env python3
"""PfAuthUser_5 as a team would fake it with spyne: a SOAP 1.1 service in the PfWsSdk namespace
whose one operation always answers result true, CallResult 2 "No PIN Entered", a fixed request
id, Error 0 — the
same values pfgate's mock answers. Served by wsgiref, as spyne's own examples do (one thread).
Used by bench/side_by_side.sh only.

    python3 spyne_pfwssdk.py PORT
"""
import logging
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from spyne import Application, Boolean, ComplexModel, Integer, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

NS = "http://www.phonefactor.com/PfWsSdk"
REQUEST_ID = sys.argv[2] if len(sys.argv) > 2 else "00000000000000000000000000000000"


class CallResult(ComplexModel):
    __namespace__ = NS
    _type_info = [("Code", Integer), ("Description", Unicode)]


class Error(ComplexModel):
    __namespace__ = NS
    _type_info = [("Code", Integer), ("Description", Unicode)]


class PfWsSdk(ServiceBase):
    @rpc(Unicode, Unicode, Unicode, Unicode, Boolean, Unicode, Unicode, Unicode, Unicode,
         _in_arg_names={"username": "username"},
         _returns=(Boolean, CallResult, Unicode, Error),
         _out_variable_names=("PfAuthUser_5Result", "callResult", "authenticationRequestId",
                              "error"))
    def PfAuthUser_5(ctx, username, initiatingAuthenticationType, initiatingIpAddress,
                     applicationName, requireUserMatch, mode, countryCode, phoneNumber, extension):
        return (True, CallResult(Code=2, Description="No PIN Entered"), REQUEST_ID,
                Error(Code=0, Description=""))


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    app = Application([PfWsSdk], tns=NS, in_protocol=Soap11(validator="lxml"),
                      out_protocol=Soap11())
    make_server("127.0.0.1", int(sys.argv[1]), WsgiApplication(app),
                handler_class=Quiet).serve_forever()
