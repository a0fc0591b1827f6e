// Swagger UI for the collector's API, served offline from the swagger-ui-bundle package (no
// inline script: the page's Content-Security-Policy forbids it).
//
// * With API keys configured, the key the run explorer stored is sent with every request,
//   the API description (/openapi.json) included.
// * The bundled Swagger UI (4.x) reads OpenAPI 3.0; FastAPI describes the API in 3.1. The
//   description is fetched here and given to Swagger UI in 3.0 terms (nullable instead of
//   a "null" type, numeric exclusive bounds as flags, const as a one-value enum).
(function () {
  "use strict";
  var NAME = "flowscope.apiKey";

  function key() {
    try { return sessionStorage.getItem(NAME) || localStorage.getItem(NAME); } catch (e) { return null; }
  }

  function isNull(s) { return s && typeof s === "object" && s.type === "null"; }

  function to30(node) {
    if (Array.isArray(node)) return node.map(to30);
    if (!node || typeof node !== "object") return node;
    var out = {};
    Object.keys(node).forEach(function (k) { out[k] = to30(node[k]); });
    ["anyOf", "oneOf"].forEach(function (alt) {
      if (!Array.isArray(out[alt])) return;
      var rest = out[alt].filter(function (s) { return !isNull(s); });
      if (rest.length === out[alt].length) return;
      if (rest.length === 1) {
        var only = rest[0];
        delete out[alt];
        if (only.$ref) out.allOf = [only];
        else Object.keys(only).forEach(function (k) { if (!(k in out)) out[k] = only[k]; });
      } else {
        out[alt] = rest;
      }
      out.nullable = true;
    });
    if (Array.isArray(out.type)) {
      var types = out.type.filter(function (t) { return t !== "null"; });
      if (types.length < out.type.length) out.nullable = true;
      out.type = types.length === 1 ? types[0] : types;
    }
    if (typeof out.exclusiveMinimum === "number") { out.minimum = out.exclusiveMinimum; out.exclusiveMinimum = true; }
    if (typeof out.exclusiveMaximum === "number") { out.maximum = out.exclusiveMaximum; out.exclusiveMaximum = true; }
    if ("const" in out) { out["enum"] = [out["const"]]; delete out["const"]; }
    return out;
  }

  function show(message) {
    var p = document.createElement("p");
    p.style.font = "16px system-ui, sans-serif";
    p.style.margin = "2rem";
    p.textContent = message;
    var a = document.createElement("a");
    a.href = "/";
    a.textContent = "Open the run explorer to enter a key.";
    p.append(" ", a);
    document.getElementById("swagger-ui").append(p);
  }

  var headers = { Accept: "application/json" };
  if (key()) headers.Authorization = "Bearer " + key();
  fetch("/openapi.json", { headers: headers }).then(function (resp) {
    if (resp.status === 401 || resp.status === 403) {
      show("This collector requires an API key to read its API description.");
      return null;
    }
    return resp.json();
  }).then(function (spec) {
    if (!spec) return;
    spec = to30(spec);
    spec.openapi = "3.0.3";
    window.ui = SwaggerUIBundle({
      spec: spec,
      dom_id: "#swagger-ui",
      validatorUrl: null,
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      requestInterceptor: function (req) {
        var k = key();
        if (k && !req.headers.Authorization) req.headers.Authorization = "Bearer " + k;
        return req;
      }
    });
  }).catch(function (err) { show("Could not load the API description: " + err); });
})();
