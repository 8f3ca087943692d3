"""The InvoiCy simulator, exercised through raw SOAP over HTTP like any client would.

The envelopes are written by hand here (not with the provider's code), in the shape of the
official examples: ``inv:`` prefix, the document as escaped text, EmpCK = md5(access key + document).
"""

import base64
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

import pytest
import requests
import xmltodict
import zeep
from fiscal_simulators.invoicy import WSDL_FILE, InvoicySimulator
from lxml import etree

from odoo.addons.fiscal_invoice_connector.providers.invoicy import InvoicyProvider

PK = "PK-sim-Parceiro+abc=="
AK = "AK-sim-acesso-0123456789abcdef"
CNPJ = "99999999000191"
SOAP_ACTION = '"InvoiCyaction/ARECEPCAO.Execute"'


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def sim():
    with InvoicySimulator(partner_key=PK, access_key=AK, company_code=CNPJ, authorization_delay=0.2) as simulator:
        yield simulator


def envelope(document, parameters="", *, pk=PK, ck=None, ak=AK):
    ck = hashlib.md5((ak + document).encode()).hexdigest() if ck is None else ck
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:inv="InvoiCy">'
        "<soapenv:Header/><soapenv:Body><inv:recepcao.Execute><inv:Invoicyrecepcao>"
        f"<inv:Cabecalho><inv:EmpPK>{escape(pk)}</inv:EmpPK><inv:EmpCK>{ck}</inv:EmpCK><inv:EmpCO/></inv:Cabecalho>"
        "<inv:Informacoes><inv:Texto/></inv:Informacoes>"
        f"<inv:Dados><inv:DadosItem><inv:Documento>{escape(document)}</inv:Documento>"
        f"<inv:Parametros>{escape(parameters)}</inv:Parametros></inv:DadosItem></inv:Dados>"
        "</inv:Invoicyrecepcao></inv:recepcao.Execute></soapenv:Body></soapenv:Envelope>"
    )


def post(sim, body, *, action=SOAP_ACTION, content_type="text/xml; charset=utf-8"):
    headers = {"Content-Type": content_type}
    if action is not None:
        headers["SOAPAction"] = action
    data = body.encode() if isinstance(body, str) else body
    return requests.post(sim.endpoint_url, data=data, headers=headers, timeout=5)


def answer(response):
    """(Codigo, Descricao, [Documento dicts]) of each MensagemItem."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/xml")
    tree = xmltodict.parse(response.content, process_namespaces=True, namespaces={"InvoiCy": None})
    body = tree["http://schemas.xmlsoap.org/soap/envelope/:Envelope"]["http://schemas.xmlsoap.org/soap/envelope/:Body"]
    items = body["recepcao.ExecuteResponse"]["Invoicyretorno"]["Mensagem"]["MensagemItem"]
    items = items if isinstance(items, list) else [items]
    out = []
    for item in items:
        docs = (item.get("Documentos") or {}).get("DocumentosItem") or []
        docs = docs if isinstance(docs, list) else [docs]
        parsed = [xmltodict.parse(d["Documento"])["Documento"] for d in docs]
        out.append((int(item["Codigo"]), item["Descricao"], parsed))
    return out


def single(response):
    ((code, description, docs),) = answer(response)
    return code, description, docs


def fault(response):
    assert response.status_code == 500
    root = etree.fromstring(response.content)
    node = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body/{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert node is not None, response.text
    return node.findtext("faultcode"), node.findtext("faultstring")


def envio(
    id_unico="PED-1",
    description="Consultoria em TI",
    cnpj=CNPJ,
    tp_amb="2",
    taker="<TomaCNPJ>11222333000181</TomaCNPJ>",
):
    return (
        "<Envio><ModeloDocumento>NFSE</ModeloDocumento><Versao>1.00</Versao><RPS>"
        f"<RPSTipo>1</RPSTipo><IDUnico>{id_unico}</IDUnico><dEmis>2025-03-10T00:00:00</dEmis>"
        f"<natOp>1</natOp><Status>1</Status><tpAmb>{tp_amb}</tpAmb>"
        f"<Prestador><CNPJ_prest>{cnpj}</CNPJ_prest></Prestador>"
        "<ListaItens><Item><ItemSeq>1</ItemSeq><ItemDesc>Horas</ItemDesc><ItemQtde>1</ItemQtde>"
        "<ItemvUnit>250.00</ItemvUnit></Item></ListaItens>"
        "<Servico><Valores><ValServicos>250.00</ValServicos><ValAliqISS>0.05</ValAliqISS></Valores>"
        f"<IteListServico>01.07</IteListServico><Discriminacao>{description}</Discriminacao></Servico>"
        f"<Tomador>{taker}<TomaRazaoSocial>Cliente Ltda</TomaRazaoSocial></Tomador>"
        "</RPS></Envio>"
    )


def consulta(id_unico="PED-1", cnpj=CNPJ, extra=""):
    return (
        "<Consulta><ModeloDocumento>NFSe</ModeloDocumento><Versao>1.00</Versao><tpAmb>2</tpAmb>"
        f"<CnpjEmissor>{cnpj}</CnpjEmissor>{extra}<IDUnico>{id_unico}</IDUnico></Consulta>"
    )


def parametros(pdf="N", xml="N", eventos="S"):
    return (
        f"<ParametrosConsulta><Situacao>S</Situacao><XMLCompleto>{xml}</XMLCompleto><XMLLink>N</XMLLink>"
        f"<PDFBase64>{pdf}</PDFBase64><PDFLink>N</PDFLink><Eventos>{eventos}</Eventos></ParametrosConsulta>"
    )


def cancelamento(id_unico="PED-1", nfse="1", motivo="Erro na emissao", codigo="1"):
    return (
        "<EnvioEvento><ModeloDocumento>NFSe</ModeloDocumento><Versao>1</Versao><Evento>"
        f"<CNPJ>{CNPJ}</CNPJ><NFSeNumero>{nfse}</NFSeNumero><IDUnico>{id_unico}</IDUnico><EveTp>110111</EveTp>"
        f"<tpAmb>2</tpAmb><EveCodigo>{codigo}</EveCodigo><EveMotivo>{motivo}</EveMotivo></Evento></EnvioEvento>"
    )


def send(sim, document, parameters=""):
    return post(sim, envelope(document, parameters))


def consult(sim, id_unico="PED-1", **flags):
    code, _, docs = single(send(sim, consulta(id_unico), parametros(**flags)))
    assert code == 100
    (doc,) = docs
    return doc


def authorized(sim, id_unico="PED-1"):
    code, _, (doc,) = single(send(sim, envio(id_unico)))
    assert code == 100 and doc["Situacao"]["SitCodigo"] == "105"
    sim.authorize_pending()
    return consult(sim, id_unico)


# ---------------------------------------------------------------------------
# WSDL
# ---------------------------------------------------------------------------


def test_wsdl_is_served_with_the_simulator_address(sim):
    response = requests.get(sim.endpoint_url + "?wsdl", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/xml")
    assert f'location="{sim.endpoint_url}"' in response.text
    assert 'soapAction="InvoiCyaction/ARECEPCAO.Execute"' in response.text
    assert sim.wsdl_requests == 1
    assert requests.get(sim.endpoint_url, timeout=5).status_code == 200  # the service page, not the WSDL
    assert sim.wsdl_requests == 1


def test_a_generic_soap_client_can_use_the_served_wsdl(sim):
    """The shipped WSDL and the simulator agree: zeep, loading it from the URL, gets answers."""
    client = zeep.Client(sim.endpoint_url + "?wsdl")
    document = consulta("NOPE")
    result = client.service.Execute(
        Invoicyrecepcao={
            "Cabecalho": {"EmpPK": PK, "EmpCK": hashlib.md5((AK + document).encode()).hexdigest(), "EmpCO": ""},
            "Informacoes": {"Texto": ""},
            "Dados": {"DadosItem": [{"Documento": document, "Parametros": ""}]},
        }
    )
    assert result.MensagemItem[0].Codigo == 117


def test_the_shipped_wsdl_describes_the_documented_contract():
    wsdl = zeep.wsdl.Document(str(WSDL_FILE), zeep.Transport())
    binding = wsdl.bindings["{InvoiCy}recepcaoSoapBinding"]
    operation = binding.get("Execute")
    assert operation.soapaction == "InvoiCyaction/ARECEPCAO.Execute" and operation.style == "document"
    assert operation.input.body.qname.text == "{InvoiCy}recepcao.Execute"
    assert operation.output.body.qname.text == "{InvoiCy}recepcao.ExecuteResponse"
    port = wsdl.services["recepcao"].ports["recepcaoSoapPort"]
    assert port.binding_options["address"] == "https://homolog.invoicy.com.br/arecepcao.aspx"


# ---------------------------------------------------------------------------
# Keys and call-level codes
# ---------------------------------------------------------------------------


def test_indented_official_style_document_is_hashed_as_received(sim):
    document = envio().replace("><", ">\n\t<")  # what the key covers is exactly the text received
    code, _, (doc,) = single(send(sim, document))
    assert code == 100 and doc["DocIDUnico"] == "PED-1"


@pytest.mark.parametrize(
    "body, code",
    [
        (envelope(envio(), ck="0" * 32), 173),
        (envelope(envio(), ck=hashlib.md5((AK + envio()).encode()).hexdigest().upper()), 173),  # [?] lower only
        (envelope(envio(), ak="another-access-key"), 173),
        (envelope(envio(), pk="PK-unknown=="), 172),
        (envelope(envio(description="Serviço")), 173),  # accents break the key [C]
        (envelope(""), 145),
        (envelope("<Envio><RPS>"), 145),
        (envelope("<Inutilizacao><CnpjEmissor/></Inutilizacao>"), 176),
        (envelope(envio(cnpj="11222333000181")), 606),
        (envelope(envio(tp_amb="1")), 174),
        (envelope(consulta(extra="<CnpjEmpresa/>")), 145),
        (envelope(consulta("NOPE")), 117),
    ],
    ids=[
        "wrong-key", "upper-case-key", "other-access-key", "unknown-partner", "accents", "empty-document",
        "not-xml", "unknown-document", "other-company", "environment", "empty-cnpj-empresa", "nothing-found",
    ],
)  # fmt: skip
def test_call_level_codes(sim, body, code):
    got, description, docs = single(post(sim, body))
    assert got == code and description and docs == []
    assert sim.documents == {}


def test_identical_requests_are_blocked_with_179(sim):
    sim.abuse_threshold = 3
    authorized(sim)
    body = envelope(consulta(), parametros())
    assert single(post(sim, body))[0] == 100  # the 2nd identical consultation (authorized() made the 1st)
    code, description, _ = single(post(sim, body))
    assert code == 179 and "Consumo indevido" in description
    assert single(post(sim, body))[0] == 179  # blocked for a while
    assert single(post(sim, envelope(consulta(), parametros(pdf="S"))))[0] == 100  # another request is fine


# ---------------------------------------------------------------------------
# SOAP Faults
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, kwargs, expected",
    [
        ("this is not xml", {}, "Malformed SOAP envelope"),
        ("<a/>", {}, "Expected a SOAP 1.1 Envelope"),
        (
            '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><x/></s:Body></s:Envelope>',
            {},
            "recepcao.Execute",
        ),
        (envelope(envio()), {"action": '"Other"'}, "Unknown SOAPAction"),
        (envelope(envio()), {"content_type": "application/json"}, "Content-Type"),
    ],
    ids=["not-xml", "not-soap", "no-execute", "soap-action", "content-type"],
)
def test_malformed_requests_get_a_soap_fault(sim, body, kwargs, expected):
    code, message = fault(post(sim, body, **kwargs))
    assert code.startswith("soap-env:") and expected in message
    assert sim.documents == {}


def test_named_faults(sim):
    sim.inject("soap_fault")
    sim.inject("bad_envelope")
    sim.inject(500)
    assert sim.pending_faults == [("soap_fault", 1, "before"), ("bad_envelope", 1, "before"), (500, 1, "before")]
    code, message = fault(send(sim, envio()))
    assert code == "soap-env:Server" and "Erro interno" in message
    broken = send(sim, envio())
    assert broken.status_code == 200 and broken.headers["Content-Type"].startswith("text/xml")
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(broken.content)
    page = send(sim, envio())
    assert page.status_code == 500 and page.headers["Content-Type"] == "text/html"
    sim.inject(429)
    assert single(send(sim, envio()))[0] == 179  # InvoiCy's way of saying "too many"
    assert sim.documents == {}


def test_a_fault_after_processing_keeps_the_note(sim):
    sim.inject("reset", when="after")
    with pytest.raises(requests.ConnectionError):
        send(sim, envio())
    assert sim.find("PED-1")["status"] == "pending"


# ---------------------------------------------------------------------------
# Envio / Consulta
# ---------------------------------------------------------------------------


def test_send_is_pending_then_authorized_after_the_delay(sim):
    code, description, (doc,) = single(send(sim, envio()))
    assert (code, description) == (100, "Documentos processados")
    assert doc["Situacao"] == {"SitCodigo": "105", "SitDescricao": "Documento pendente"}
    assert (doc["DocNumero"], doc["DocSerie"], doc["DocIDUnico"]) == ("1", "1", "PED-1")
    pending = consult(sim)
    assert (pending["DocSitCodigo"], pending["DocStatus"], pending["NFSe"]["NFSeNumero"]) == ("105", "1", None)
    time.sleep(0.25)
    final = consult(sim, pdf="S", xml="S")
    assert (final["DocSitCodigo"], final["DocStatus"], final["NFSe"]["NFSeNumero"]) == ("100", "2", "1")
    assert len(final["NFSe"]["NFSeCodVerificacao"]) == 9 and final["Resumo"]["DocVlrTotal"] == "250.00"
    assert base64.b64decode(final["DocPDF"]).startswith(b"%PDF")
    assert base64.b64decode(final["DocXML"]).startswith(b"<CompNfse>")
    bare = consult(sim)
    assert bare["DocPDF"] is None and bare["DocXML"] is None  # base64 only when asked


def test_rps_and_nfse_numbers_follow_each_other(sim):
    for n in range(1, 4):
        send(sim, envio(f"PED-{n}"))
    sim.authorize_pending()
    assert [consult(sim, f"PED-{n}")["NFSe"]["NFSeNumero"] for n in range(1, 4)] == ["1", "2", "3"]
    code, _, docs = single(
        send(
            sim,
            "<Consulta><ModeloDocumento>NFSe</ModeloDocumento><Versao>1.00</Versao><tpAmb>2</tpAmb>"
            f"<CnpjEmissor>{CNPJ}</CnpjEmissor><NumeroInicial>2</NumeroInicial><NumeroFinal>3</NumeroFinal>"
            "<Serie>1</Serie></Consulta>",
        )
    )
    assert code == 100 and [d["DocIDUnico"] for d in docs] == ["PED-2", "PED-3"]


def test_rejeitar_is_rejected_by_the_municipality(sim):
    send(sim, envio(description="Servico a REJEITAR"))
    sim.authorize_pending()
    doc = consult(sim, pdf="S")
    assert (doc["DocSitCodigo"], doc["DocStatus"]) == ("999", "3") and "E160" in doc["DocSitDescricao"]
    assert doc["DocPDF"] is None


def test_sync_processing_decides_in_the_send_answer(sim):
    sim.processing = "sync"
    assert single(send(sim, envio()))[2][0]["Situacao"]["SitCodigo"] == "100"
    rejected = single(send(sim, envio("PED-2", description="REJEITAR")))[2][0]["Situacao"]
    assert rejected["SitCodigo"] == "999" and "E160" in rejected["SitDescricao"]


def test_layout_problems_are_rejected_at_once_and_can_be_fixed(sim):
    bad = envio(taker="<TomaCPF>12345678900</TomaCPF>").replace("01.07", "0107")
    (doc,) = single(send(sim, bad))[2]
    assert doc["Situacao"]["SitCodigo"] == "999"
    assert "CPF/CNPJ do tomador" in doc["Situacao"]["SitDescricao"] and "99.99" in doc["Situacao"]["SitDescricao"]
    (again,) = single(send(sim, envio()))[2]  # same IDUnico, fixed: processed anew, same RPS number
    assert again["Situacao"]["SitCodigo"] == "105" and again["DocNumero"] == doc["DocNumero"]
    assert sim.find("PED-1")["sends"] == 2


def test_duplicate_idunico_is_already_sent(sim):
    send(sim, envio())
    (doc,) = single(send(sim, envio()))[2]
    assert doc["Situacao"] == {"SitCodigo": "111", "SitDescricao": "RPS já enviado"} and doc["DocNumero"] == "1"
    sim.duplicate_answer = "codigo313"
    code, description, (doc,) = single(send(sim, envio()))
    assert code == 313 and "já efetivado" in description and doc["DocIDUnico"] == "PED-1"
    assert len(sim.documents) == 1 and sim.find("PED-1")["sends"] == 1


# ---------------------------------------------------------------------------
# EnvioEvento (cancellation)
# ---------------------------------------------------------------------------


def test_cancel_an_authorized_note(sim):
    authorized(sim)
    (doc,) = single(send(sim, cancelamento()))[2]
    assert doc["Situacao"] == {"SitCodigo": "101", "SitDescricao": "Cancelado"}
    assert doc["NFSe"]["NFSeNumero"] == "1"
    status = consult(sim)
    assert (status["DocSitCodigo"], status["DocStatus"]) == ("101", "5")
    assert status["Eventos"]["EventosItem"]["cStat"] == "135"
    assert single(send(sim, cancelamento()))[2][0]["Situacao"]["SitCodigo"] == "101"  # idempotent


def test_cancel_pending_then_done(sim):
    sim.cancel_delay = 10
    authorized(sim)
    assert single(send(sim, cancelamento()))[2][0]["Situacao"]["SitCodigo"] == "105"
    status = consult(sim)
    assert status["DocStatus"] == "2" and status["Eventos"]["EventosItem"]["cStat"] == "105"
    sim.authorize_pending()
    assert consult(sim)["DocStatus"] == "5"


@pytest.mark.parametrize(
    "event, expected",
    [
        (cancelamento(nfse=""), "NFSeNumero não informado"),
        (cancelamento(nfse="7"), "NFSeNumero não confere"),
        (cancelamento(motivo=""), "EveMotivo"),
        (cancelamento(motivo="x" * 101), "EveMotivo"),
        (cancelamento(codigo="3"), "EveCodigo"),
    ],
)
def test_cancel_event_validation(sim, event, expected):
    authorized(sim)
    situation = single(send(sim, event))[2][0]["Situacao"]
    assert situation["SitCodigo"] == "999" and expected in situation["SitDescricao"]
    assert sim.find("PED-1")["status"] == "authorized"


def test_cancel_of_unknown_or_unauthorized_notes(sim):
    assert single(send(sim, cancelamento("NOPE")))[2][0]["Situacao"]["SitCodigo"] == "106"
    send(sim, envio())
    situation = single(send(sim, cancelamento()))[2][0]["Situacao"]
    assert situation["SitCodigo"] == "999" and "pendente" in situation["SitDescricao"]


# ---------------------------------------------------------------------------
# Secrets, webhooks, CLI
# ---------------------------------------------------------------------------


def test_request_log_holds_no_keys(sim):
    authorized(sim)
    post(sim, envelope(envio(), ck="0" * 32))
    assert sim.requests and all(
        set(r) <= {"method", "path", "status", "fault", "processed_status"} for r in sim.requests
    )
    assert PK not in repr(sim.requests) and AK not in repr(sim.requests)


class _Receiver(BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((self.headers.get("Authorization"), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_status_changes_are_pushed_to_the_webhook_with_the_token():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.received = []
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        with InvoicySimulator(
            partner_key=PK, access_key=AK, authorization_delay=0.05, webhook_url=url, webhook_token="tok-123"
        ) as sim:
            send(sim, envio())
            deadline = time.monotonic() + 3
            while not sim.webhook_deliveries and time.monotonic() < deadline:
                time.sleep(0.02)
            assert sim.webhook_deliveries == [("PED-1", 200)]
    finally:
        server.shutdown()
        server.server_close()
    ((authorization, body),) = _Receiver.received
    assert InvoicyProvider.check_webhook_token({"Authorization": authorization}, "tok-123")
    assert json.loads(body)["documento"]["DocStatus"] == "2"
    assert InvoicyProvider.parse_webhook(body) == "PED-1"


def test_cli_serves_until_sigterm_without_printing_the_keys():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "fiscal_simulators.invoicy", "--port", "0", "--partner-key", PK]
    command += ["--access-key", AK]
    proc = subprocess.Popen([*command, "--company-code", CNPJ], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=10), "the simulator printed nothing"
        line = proc.stdout.readline().decode()
        assert line.startswith("InvoiCy simulator listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        response = requests.post(
            base_url + "/arecepcao.aspx",
            data=envelope(consulta("NOPE")).encode(),
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION},
            timeout=5,
        )
        assert single(response)[0] == 117
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate()
        output = line.encode() + out + err
        assert PK.encode() not in output and AK.encode() not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
