#!/usr/bin/env python3
"""Extracts the request/response JSON schemas the test stand-ins validate against.

Reads the official OpenAPI specs of Retell, of Meta's WhatsApp Cloud API and of OpenAI's audio
transcription (an extract of OpenAI's document holding only that operation) and writes, for the
few operations the bridge uses, their schemas with every `$ref` resolved inline and the prose
(description, example, summary, title, externalDocs, x-*) stripped:

    sandbox/specs/retell.json
    sandbox/specs/whatsapp.json
    sandbox/specs/openai.json (and its license, openai-openapi.LICENSE, copied beside it)

Each file: {"source": ..., "dialect": ..., "patches": [...], "operations": {"<operationId>":
{"method", "path", "request", "responses": {"<status>": schema or null}}}}; whatsapp.json also
holds the spec's named request examples of `sendMessage` and every example of the
`/whatsapp/webhooks` payload. The `/whatsapp/webhooks` path has no operationId in the spec; it is
stored as operation "webhook". A request that is multipart/form-data (OpenAI's transcription)
is stored as the schema of its form fields, an object like a JSON body; openai.json also holds
under "schemas" the named components a stand-in checks its own answers against.

The stored schemas are standard JSON Schema (draft 2020-12, the "dialect"), which the stand-ins
check with the `jsonschema` crate and nothing else, so the OpenAPI forms and the strictness the
stand-ins need are written out here (see `standard`):

- Strict objects, as the real APIs answer 400 to unknown fields: an object schema that declares
  `properties` and says nothing about `additionalProperties` rejects any other field. The
  schemas applying to the same object are read as one: a field declared by one branch of an
  `allOf` is known to all of them (the specs build every message as `allOf: [base, own]`), and
  to the `oneOf`/`anyOf` alternatives below them; a field declared by any branch is known to the
  schema that owns the `allOf`/`oneOf`/`anyOf`. Written out as `additionalProperties: false`
  with the fields known from elsewhere added to `properties` as `true`. An open branch
  (`additionalProperties` true or a schema) opens the whole object; under a `not`, no field is
  unknown. An object with `patternProperties` is left as the spec has it.
- OpenAPI 3.0 `nullable: true` becomes "null" in `type` (and in `enum`); boolean
  `exclusiveMinimum`/`exclusiveMaximum` become the numeric bound of 3.1 / 2020-12.
- `discriminator` is dropped: it only tells readers which `oneOf` alternative applies, which the
  alternatives' own `type` enums already decide (and a mapping without `oneOf` is expanded into
  one, see `Spec.schema`).

Where the spec contradicts its own examples and the documented behaviour of the real API, the
schema is patched here, and every patch is listed under "patches" in the output.

Usage: scripts/extract-api-schemas.py [RETELL_SPEC WHATSAPP_SPEC [OPENAI_SPEC]]
       (default: ../shared/specs/ relative to the repository root)
Output is deterministic: rerunning it on the same specs produces identical files.
"""

import copy
import json
import os
import shutil
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = os.path.join(os.path.dirname(REPO), "shared", "specs")
OUT = os.path.join(REPO, "sandbox", "specs")

RETELL_OPERATIONS = [
    # (operationId, method, path) as the spec has them; checked against the spec below.
    ("createChat", "post", "/create-chat"),
    ("createChatCompletion", "post", "/create-chat-completion"),
    ("getChat", "get", "/get-chat/{chat_id}"),
    ("endChat", "patch", "/end-chat/{chat_id}"),
]
WHATSAPP_SEND = ("sendMessage", "post", "/{Version}/{Phone-Number-ID}/messages")
# The URL of a customer's media (a voice note): the stand-in checks its answers against it.
WHATSAPP_MEDIA = ("retrieveMediaUrl", "get", "/{Version}/{Media-ID}")
WHATSAPP_WEBHOOK_PATH = "/whatsapp/webhooks"
WHATSAPP_WEBHOOK_ID = "webhook"
OPENAI_TRANSCRIPTION = ("createTranscription", "post", "/audio/transcriptions")
# The components the transcription stand-in checks its answers against, by name.
OPENAI_SCHEMAS = ("CreateTranscriptionResponseJson", "ErrorResponse")
OPENAI_LICENSE = "openai-openapi.LICENSE"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Prose keywords dropped from every schema object (never from a map of property names).
STRIP = {"description", "example", "examples", "summary", "title", "externalDocs"}
# Keywords whose value is one schema / a list of schemas / a map of name -> schema.
SCHEMA_ONE = {"items", "additionalProperties", "not", "additionalItems", "contains", "propertyNames",
              "if", "then", "else", "unevaluatedProperties", "unevaluatedItems"}
SCHEMA_LIST = {"allOf", "oneOf", "anyOf", "prefixItems"}
SCHEMA_MAP = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}


class Spec:
    def __init__(self, path):
        self.path = path
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        self.name = os.path.basename(path)
        # $ref -> $ref substitutions (see webhook_renames).
        self.renames = {}
        # Components with a discriminator mapping and no oneOf/anyOf (see schema()).
        self.expanded = set()

    def source(self):
        return f"{self.name} (info.version {self.doc['info']['version']})"

    def lookup(self, ref):
        ref = self.renames.get(ref, ref)
        if not ref.startswith("#/"):
            sys.exit(f"{self.name}: external $ref not supported: {ref}")
        node = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[part]
        return node

    def deref(self, node):
        """Follows a chain of `$ref` for a non-schema object (response, example, request body)."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                sys.exit(f"{self.name}: $ref cycle at {ref}")
            seen.add(ref)
            node = self.lookup(ref)
        return node

    def schema(self, node, stack=()):
        """Returns `node` with every $ref inlined and prose stripped; a recursive $ref becomes {}."""
        if isinstance(node, bool) or node is None:
            return node
        if not isinstance(node, dict):
            sys.exit(f"{self.name}: not a schema: {node!r}")
        if "$ref" in node:
            ref = node["$ref"]
            target = {} if ref in stack else self.schema(self.lookup(ref), stack + (ref,))
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            siblings = self.schema(siblings, stack)
            if not siblings:
                return target
            # OpenAPI 3.1: keywords next to a $ref apply as well.
            return {"allOf": [target, siblings]}
        out = {}
        for key, value in node.items():
            if key in STRIP or key.startswith("x-"):
                continue
            if key in SCHEMA_ONE and isinstance(value, dict):
                out[key] = self.schema(value, stack)
            elif key in SCHEMA_LIST:
                out[key] = [self.schema(v, stack) for v in value]
            elif key in SCHEMA_MAP:
                out[key] = {name: self.schema(v, stack) for name, v in value.items()}
            else:
                out[key] = copy.deepcopy(value)
        mapping = (node.get("discriminator") or {}).get("mapping")
        if mapping and "oneOf" not in node and "anyOf" not in node:
            # Polymorphism through allOf: the alternatives are the mapping's schemas (which
            # extend this one; their $ref back to it is cut as recursive).
            targets = list(dict.fromkeys(mapping.values()))
            self.expanded.add(stack[-1].rsplit("/", 1)[1] if stack else "(inline)")
            out["oneOf"] = [self.schema({"$ref": t}, stack) for t in targets]
        return out

    def operation(self, method, path):
        return self.doc["paths"][path][method]

    def json_schema(self, holder, media_type="application/json"):
        """The schema of a request body or response in `media_type`, or None."""
        holder = self.deref(holder)
        if not holder:
            return None
        content = holder.get("content") or {}
        media = content.get(media_type)
        if media is None or "schema" not in media:
            return None
        return standard(self.schema(media["schema"]))

    def examples(self, holder):
        holder = self.deref(holder)
        media = (holder.get("content") or {}).get("application/json") or {}
        out = {}
        for name, example in (media.get("examples") or {}).items():
            example = self.deref(example)
            if "value" not in example:
                sys.exit(f"{self.name}: example {name!r} has no inline value")
            out[name] = example["value"]
        return out

    def extract(self, operation_id, method, path, request_type="application/json"):
        op = self.operation(method, path)
        if op.get("operationId") != operation_id:
            sys.exit(f"{self.name}: {method.upper()} {path} has operationId "
                     f"{op.get('operationId')!r}, expected {operation_id!r}")
        request = None
        if "requestBody" in op:
            request = self.json_schema(op["requestBody"], request_type)
            if request is None:
                sys.exit(f"{self.name}: {operation_id} has no {request_type} request body")
        return {
            "method": method.upper(),
            "path": path,
            "request": request,
            "responses": self.responses(op),
        }

    def responses(self, op):
        return {str(code): self.json_schema(response)
                for code, response in sorted((op.get("responses") or {}).items(),
                                             key=lambda item: str(item[0]))}


DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Keywords that apply other schemas to the same instance (the branches of one object).
BRANCHES = ("allOf", "oneOf", "anyOf")


def declared_names(schema):
    """The fields `schema` declares, itself or through its allOf/oneOf/anyOf branches."""
    if not isinstance(schema, dict):
        return []
    names = list(schema.get("properties") or {})
    for keyword in BRANCHES:
        for branch in schema.get(keyword, []):
            names += declared_names(branch)
    return names


def is_open(schema):
    """Accepts fields it does not declare, so the schemas next to it must as well."""
    extra = schema.get("additionalProperties") if isinstance(schema, dict) else None
    return extra is True or isinstance(extra, dict)


def standard(schema, siblings=(), open_=False):
    """`schema` (inlined, OpenAPI 3.0 or 3.1) as standard JSON Schema 2020-12 with our rules
    (see the top of this file) written out.

    `siblings`: the fields the schemas applying to the same object next to this one declare (the
    other branches of an allOf, the owner of a oneOf/anyOf); `open_`: one of them accepts any
    field, or this schema is under a `not`."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("nullable", "discriminator") or key in BRANCHES:
            continue
        if key == "not":
            out[key] = standard(value, (), True)
        elif key in SCHEMA_ONE:
            out[key] = standard(value)
        elif key in SCHEMA_LIST:
            out[key] = [standard(v) for v in value]
        elif key in SCHEMA_MAP:
            out[key] = {name: standard(v) for name, v in value.items()}
        else:
            out[key] = copy.deepcopy(value)

    # The branches see this schema's fields and those of every allOf branch (not those of the
    # other alternatives of a oneOf/anyOf: an instance matches one of them, not all).
    all_of = schema.get("allOf", [])
    inner = list(siblings) + list(schema.get("properties") or {})
    for branch in all_of:
        inner += declared_names(branch)
    inner_open = open_ or is_open(schema) or any(is_open(b) for b in all_of)
    for keyword in BRANCHES:
        if keyword in schema:
            out[keyword] = [standard(b, inner, inner_open) for b in schema[keyword]]

    extra = schema.get("additionalProperties")
    if open_:
        # Fields declared elsewhere or not, this schema checks none it does not declare.
        out.pop("additionalProperties", None)
    elif "patternProperties" not in schema and (
            extra is False or (extra is None and "properties" in schema)
            or (isinstance(extra, dict) and extra)):
        known = dict.fromkeys(list(siblings) + declared_names(schema))
        if known:
            properties = out.setdefault("properties", {})
            for name in known:
                properties.setdefault(name, True)
        if extra is None:
            out["additionalProperties"] = False

    # OpenAPI 3.0: a boolean `exclusiveMinimum`/`exclusiveMaximum` qualifies `minimum`/`maximum`.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), bool):
            if out.pop(exclusive) and bound in out:
                out[exclusive] = out.pop(bound)
    # OpenAPI 3.0: `nullable: true` lets null through before any other keyword is checked.
    if schema.get("nullable") is True:
        if "const" in out:
            out["enum"] = [out.pop("const")]
        if any(k in out for k in ("not",) + BRANCHES):
            out = {"anyOf": [{"type": "null"}, out]}
        else:
            if "type" in out:
                types = out["type"] if isinstance(out["type"], list) else [out["type"]]
                out["type"] = types + ["null"] if "null" not in types else types
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
    return out


def expansion_note(spec):
    if not spec.expanded:
        return []
    return [f"discriminator without oneOf/anyOf ({', '.join(sorted(spec.expanded))}): the schemas "
            "of its mapping taken as the oneOf alternatives (each extends the base by allOf)"]


def retell(spec):
    operations = {op_id: spec.extract(op_id, method, path)
                  for op_id, method, path in RETELL_OPERATIONS}
    return {
        "source": spec.source(),
        "dialect": DIALECT,
        "patches": expansion_note(spec),
        "operations": operations,
    }


class Patcher:
    """Edits the spec's components before extraction, and records why."""

    def __init__(self, spec):
        self.spec = spec
        self.patches = []

    def component(self, name):
        schemas = self.spec.doc["components"]["schemas"]
        if name not in schemas:
            self.fail(f"component {name} is gone")
        return schemas[name]

    def own_part(self, name):
        """The inline part of an `allOf: [{$ref: base}, {...own...}]` component."""
        parts = [p for p in self.component(name).get("allOf", []) if "$ref" not in p]
        if len(parts) != 1:
            self.fail(f"component {name} is no longer allOf [base, own]")
        return parts[0]

    def fail(self, why):
        sys.exit(f"{self.spec.name}: a patch no longer applies ({why}); review the patches in "
                 f"{os.path.relpath(__file__, REPO)}")

    def record(self, text):
        self.patches.append(text)


def patch_whatsapp(patcher):
    """Makes the sendMessage schema accept what the spec's own examples send (and the API too)."""
    message = patcher.component("Message")
    branch_names = [b["$ref"].rsplit("/", 1)[1] for b in message["oneOf"]]

    # `recipient_type` is optional (default "individual") and `type` defaults to "text", yet
    # BaseMessageProperties requires both ("Send Test Message" and "Send Text Message with
    # Preview URL" omit them). `type` stays required for every other kind of message.
    base = patcher.component("BaseMessageProperties")
    if not {"recipient_type", "type"} <= set(base.get("required", [])):
        patcher.fail("BaseMessageProperties no longer requires recipient_type and type")
    base["required"] = [r for r in base["required"] if r not in ("recipient_type", "type")]
    for name in branch_names:
        if name != "TextMessage":
            own = patcher.own_part(name)
            own["required"] = own.get("required", []) + ["type"]
    patcher.record("sendMessage: `recipient_type` and, for a text message, `type` are optional "
                   "(BaseMessageProperties requires them; the spec's examples omit them)")

    # Username users (business-scoped user ids, BSUIDs) are addressed by `recipient` instead of
    # `to` (Meta's changelog of 2026, after this spec): one of the two, then.
    if "recipient" in base.get("properties", {}) or "to" not in base.get("required", []):
        patcher.fail("BaseMessageProperties already has recipient, or no longer requires to")
    base["properties"]["recipient"] = {"type": "string"}
    base["required"] = [r for r in base["required"] if r != "to"]
    base["anyOf"] = [{"required": ["to"]}, {"required": ["recipient"]}]
    patcher.record("sendMessage: a message goes `to` a phone number or to a `recipient` "
                   "(a username user's business-scoped user id, added to the API after this "
                   "spec); one of the two is required")

    # LanguageObject requires `policy` (deprecated, only value "deterministic"); no example of
    # a template message has it.
    language = patcher.component("LanguageObject")
    if "policy" not in language.get("required", []):
        patcher.fail("LanguageObject no longer requires policy")
    language["required"] = [r for r in language["required"] if r != "policy"]
    patcher.record("sendMessage: template `language.policy` is optional (LanguageObject "
                   "requires it; no template example has it)")

    # Template button components: the examples send `index` as an integer and `sub_type` values
    # the enum lacks ("flow", "CATALOG"); the pattern of `index` ("^[2-6, 11-14]$", a character
    # class) would reject any index but 1-6.
    for name in ("TemplateComponent", "ButtonComponent"):
        schema = patcher.component(name)
        schema = schema if "properties" in schema else patcher.own_part(name)
        index, sub_type = schema["properties"]["index"], schema["properties"]["sub_type"]
        if index.get("type") != "string" or "pattern" not in index or "flow" in sub_type["enum"]:
            patcher.fail(f"{name}.index/sub_type changed")
        index["type"] = ["string", "integer"]
        del index["pattern"]
        sub_type["enum"] = sub_type["enum"] + ["flow", "CATALOG"]
    patcher.record("sendMessage: template button `index` may be an integer, its bogus pattern "
                   "\"^[2-6, 11-14]$\" is dropped, and `sub_type` also takes \"flow\" and "
                   "\"CATALOG\" (as the spec's template examples send them)")

    # Template parameters (alternatives of ParameterObject/ButtonParameterObject, by their
    # discriminator mapping): the examples give date_time the fields the API ignores (it always
    # uses fallback_value) and catalog/flow buttons an `action` parameter the schema lacks.
    date_time = patcher.component("DateTimeObject")
    if set(date_time.get("properties", {})) != {"fallback_value"}:
        patcher.fail("DateTimeObject changed")
    date_time["properties"]["calendar"] = {"type": "string"}
    for field in ("year", "month", "day_of_month", "day_of_week", "hour", "minute"):
        date_time["properties"][field] = {"type": "integer"}
    button_parameter = patcher.component("ButtonParameterObject")
    if "action" in button_parameter["properties"]["type"]["enum"]:
        patcher.fail("ButtonParameterObject already has type action")
    button_parameter["properties"]["type"]["enum"].append("action")
    mapping = button_parameter["discriminator"]["mapping"]
    mapping["action"] = "#/components/schemas/ButtonActionParameter"
    patcher.spec.doc["components"]["schemas"]["ButtonActionParameter"] = {"allOf": [
        {"$ref": "#/components/schemas/ButtonParameterObject"},
        {"type": "object", "required": ["action"], "properties": {
            "type": {"enum": ["action"]}, "action": {"type": "object"}}},
    ]}
    patcher.record("sendMessage: template date_time parameters may have calendar, year, month, "
                   "day_of_month, day_of_week, hour and minute, and button parameters may be "
                   "{type: action, action: {...}} (as the spec's template examples send them)")

    # Mark-as-read: the spec has MarkMessageRequestPayload, used by no operation, and an example
    # ("Send typing indicator and read receipt") of sendMessage with a `typing_indicator` that
    # schema lacks. Add it as one more alternative of Message.
    mark = patcher.component("MarkMessageRequestPayload")
    properties = mark.get("properties", {})
    if set(properties) != {"message_id", "messaging_product", "status"}:
        patcher.fail("MarkMessageRequestPayload changed")
    properties["status"]["enum"] = ["read"]
    properties["typing_indicator"] = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string", "enum": ["text"]}},
    }
    message["oneOf"].append({"$ref": "#/components/schemas/MarkMessageRequestPayload"})
    patcher.record("sendMessage: MarkMessageRequestPayload (in the spec but used by no operation) "
                   "added to the alternatives of Message, with `status` limited to \"read\" and "
                   "the optional `typing_indicator: {type: text}` of the spec's example")


def webhook_renames(spec):
    """The spec merges several files; the webhook's components that collided with others were
    renamed with a suffix (BaseMessageProperties_1, TextMessage_2, ...) but the $refs to them
    were not, so the webhook payload points at the outgoing-message schemas. Map them back."""
    names = list(spec.doc["components"]["schemas"])
    block = names[names.index("WebhookPayload"):]
    renames = {}
    for name in block:
        base, _, suffix = name.rpartition("_")
        if base and suffix.isdigit() and base not in block:
            if f"#/components/schemas/{base}" in renames:
                sys.exit(f"{spec.name}: two webhook components named {base}_*; "
                         "review webhook_renames")
            renames[f"#/components/schemas/{base}"] = f"#/components/schemas/{name}"
    return renames


def whatsapp(spec):
    patcher = Patcher(spec)
    patch_whatsapp(patcher)
    op_id, method, path = WHATSAPP_SEND
    operations = {op_id: spec.extract(op_id, method, path)}
    operations[WHATSAPP_MEDIA[0]] = spec.extract(*WHATSAPP_MEDIA)

    webhook_examples = {}
    hook = spec.doc["paths"][WHATSAPP_WEBHOOK_PATH]
    spec.renames = webhook_renames(spec)
    patcher.record("webhook: $refs resolved to the webhook's own components ("
                   + ", ".join(sorted(r.rsplit("/", 1)[1] for r in spec.renames.values()))
                   + "), which the merged spec renamed without updating the $refs to them")
    for m in HTTP_METHODS:
        if m not in hook:
            continue
        op = hook[m]
        if "requestBody" in op:
            for name, value in spec.examples(op["requestBody"]).items():
                if name in webhook_examples:
                    sys.exit(f"whatsapp: duplicate webhook example name {name!r}")
                webhook_examples[name] = value
        if m == "post":
            operations[op.get("operationId") or WHATSAPP_WEBHOOK_ID] = {
                "method": "POST",
                "path": WHATSAPP_WEBHOOK_PATH,
                "request": spec.json_schema(op["requestBody"]) if "requestBody" in op else None,
                "responses": spec.responses(op),
            }
    spec.renames = {}

    return {
        "source": spec.source(),
        "dialect": DIALECT,
        "patches": patcher.patches + expansion_note(spec),
        "operations": operations,
        "request_examples": spec.examples(spec.operation(method, path)["requestBody"]),
        "webhook_examples": webhook_examples,
    }


def patch_openai(patcher):
    """Gives the operation the error answers the stand-in sends, in OpenAI's documented shape."""
    op = patcher.spec.operation("post", OPENAI_TRANSCRIPTION[2])
    responses = op["responses"]
    error = {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    # The 429 response is a $ref to components/responses/TooManyRequests, which the extract
    # lacks (OpenAI's full document has no such component either).
    if responses.get("429") != {"$ref": "#/components/responses/TooManyRequests"}:
        patcher.fail("the 429 response of createTranscription changed")
    if "TooManyRequests" in (patcher.spec.doc["components"].get("responses") or {}):
        patcher.fail("components/responses/TooManyRequests exists now")
    responses["429"] = error
    patcher.record("createTranscription: the 429 response, a $ref to the missing "
                   "components/responses/TooManyRequests, is ErrorResponse")
    # OpenAI answers every error with ErrorResponse (its error-codes guide); the spec lists only
    # 200 and 429. These are the ones the bridge tells apart.
    for status in ("400", "401", "413", "500"):
        if status in responses:
            patcher.fail(f"createTranscription documents {status} now")
        responses[status] = error
    patcher.record("createTranscription: 400, 401, 413 and 500 answer ErrorResponse (OpenAI's "
                   "documented error object; the spec lists only 200 and 429)")


def openai(spec):
    patcher = Patcher(spec)
    patch_openai(patcher)
    op_id, method, path = OPENAI_TRANSCRIPTION
    schemas = spec.doc["components"]["schemas"]
    return {
        "source": spec.source(),
        "dialect": DIALECT,
        "patches": patcher.patches + expansion_note(spec),
        "operations": {op_id: spec.extract(op_id, method, path, "multipart/form-data")},
        "schemas": {name: standard(spec.schema(schemas[name])) for name in OPENAI_SCHEMAS},
    }


def write(name, data):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{os.path.relpath(path, REPO)}: {len(text.encode('utf-8'))} bytes")


def main(argv):
    if len(argv) not in (1, 3, 4):
        sys.exit(__doc__)
    given = len(argv) > 1
    retell_path = argv[1] if given else os.path.join(SPECS, "retell-openapi_2026-04.yaml")
    whatsapp_path = (argv[2] if given
                     else os.path.join(SPECS, "whatsapp-business-messaging-api_v23.0.yaml"))
    openai_path = (argv[3] if len(argv) == 4
                   else os.path.join(SPECS, "openai-audio-transcriptions_2026-08.json"))
    write("retell.json", retell(Spec(retell_path)))
    write("whatsapp.json", whatsapp(Spec(whatsapp_path)))
    # JSON is YAML: Spec reads it as it reads the others.
    write("openai.json", openai(Spec(openai_path)))
    license_path = os.path.join(os.path.dirname(openai_path), OPENAI_LICENSE)
    shutil.copyfile(license_path, os.path.join(OUT, OPENAI_LICENSE))
    print(f"{os.path.relpath(os.path.join(OUT, OPENAI_LICENSE), REPO)}: copied")


if __name__ == "__main__":
    main(sys.argv)
