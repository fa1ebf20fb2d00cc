/*
 * Shims of the Glide APIs Deskgate's business rule and UI action call, for the ServiceNow
 * simulator's ES5 engine (Duktape, through dukpy). Written from ServiceNow's server-side API
 * reference (GlideRecord, GlideElement, GlideSystem, ...), each behaviour as documented there:
 *
 * - GlideRecord (`current`, `previous`): fields are GlideElement objects (current.state).
 *   getValue(name) returns the stored value as a string, and null for an empty field; a boolean
 *   field comes back as "1" or "0", not "true"/"false" (GlideRecord.getValue). setValue(name,
 *   value), getUniqueValue(), getTableName(), isNewRecord(), update() (saves the record: honoured
 *   for UI actions).
 * - GlideElement: toString() is the value as text, "true"/"false" for a boolean
 *   (GlideElement.toString); a boolean element compares with true/false
 *   (`current.active == true`), as the platform's Java interop does. changes(): the value
 *   differs from `previous` (on insert: the field has a value) (GlideElement.changes);
 *   changesTo(v) / changesFrom(v): changes() and the new / old value equals v
 *   (GlideElement.changesTo, changesFrom); nil(): the value is null or empty
 *   (GlideElement.nil). getValue(), setValue(v).
 * - gs: getProperty(name, default), generateGUID(), getUserName(), info/warn/error/debug/log.
 * - GlideDateTime: now; getNumericValue() (ms since the epoch), getValue() (UTC, yyyy-MM-dd
 *   HH:mm:ss).
 * - GlideStringUtil: base64Encode/base64Decode (of the UTF-8 bytes).
 * - GlideCertificateEncryption: generateMac(key, algorithm, data): the key is base64-encoded
 *   (decoded to bytes before use), the data's UTF-8 bytes are MACed, the result is base64.
 * - sn_ws.RESTMessageV2: setEndpoint, setHttpMethod, setRequestHeader, setRequestBody,
 *   setHttpTimeout, execute() (a real HTTP request; RESTResponseV2 getStatusCode, getBody,
 *   getHeader, haveError, getErrorMessage) and executeAsync() (sent after the transaction).
 *
 * The Python side (sandbox/servicenow_scripts.py) answers `call_python(name, ...)` and passes
 * `dukpy.record`, `dukpy.previous`, `dukpy.table`, `dukpy.booleans`, `dukpy.user`. Values are
 * stored as the Table API shows them ("true"/"false" for booleans).
 */
var __dg = { saved: false };

function GlideElement(record, name) {
    this._record = record;
    this._name = name;
}
GlideElement.prototype._boolean = function () {
    return this._record._booleans.indexOf(this._name) >= 0;
};
GlideElement.prototype.getValue = function () { return this._record.getValue(this._name); };
GlideElement.prototype.setValue = function (v) { this._record.setValue(this._name, v); };
GlideElement.prototype.toString = function () {
    var v = this._record._values[this._name];
    return v === undefined || v === null ? '' : String(v);
};
GlideElement.prototype.valueOf = function () {
    return this._boolean() ? this.toString() === 'true' : this.toString();
};
GlideElement.prototype.getDisplayValue = GlideElement.prototype.toString;
GlideElement.prototype.nil = function () { return this.toString() === ''; };
GlideElement.prototype._before = function () {
    var prev = this._record._previous;
    return prev === null ? '' : String(prev[this._name] || '');
};
GlideElement.prototype.changes = function () { return this.toString() !== this._before(); };
GlideElement.prototype.changesTo = function (v) {
    return this.changes() && this.toString() === String(v);
};
GlideElement.prototype.changesFrom = function (v) {
    return this.changes() && this._before() === String(v);
};

function GlideRecordShim(table, values, previous, booleans) {
    this._table = table;
    this._values = values;
    this._previous = previous; // the values before this update; null on insert
    this._booleans = booleans;
    this._newRecord = previous === null;
    for (var name in values) {
        if (values.hasOwnProperty(name)) { this[name] = new GlideElement(this, name); }
    }
}
GlideRecordShim.prototype.getValue = function (name) {
    var v = this._values[name];
    if (v === undefined || v === null || v === '') { return null; }
    if (this._booleans.indexOf(name) >= 0) { return String(v) === 'true' ? '1' : '0'; }
    return String(v);
};
GlideRecordShim.prototype.setValue = function (name, value) {
    var v = value === null || value === undefined ? '' : String(value);
    if (this._booleans.indexOf(name) >= 0 && v !== '') {  // stored as the Table API shows it
        v = v === 'true' || v === '1' ? 'true' : 'false';
    }
    this._values[name] = v;
    if (!(this[name] instanceof GlideElement)) { this[name] = new GlideElement(this, name); }
};
GlideRecordShim.prototype.getUniqueValue = function () { return this.getValue('sys_id'); };
GlideRecordShim.prototype.getTableName = function () { return this._table; };
GlideRecordShim.prototype.isNewRecord = function () { return this._newRecord; };
GlideRecordShim.prototype.update = function () { __dg.saved = true; return this.getUniqueValue(); };
GlideRecordShim.prototype._dump = function () {
    // A field assigned directly (current.short_description = 'x') replaced its element.
    var out = {};
    for (var name in this._values) {
        if (this._values.hasOwnProperty(name)) {
            var el = this[name];
            out[name] = el instanceof GlideElement || el === undefined ? this._values[name] : String(el);
        }
    }
    return out;
};

var gs = {
    getProperty: function (name, fallback) {
        var v = call_python('glide.property', String(name));
        return v === null ? (fallback === undefined ? null : fallback) : v;
    },
    generateGUID: function () { return call_python('glide.guid'); },
    getUserName: function () { return dukpy.user; },
    log: function (msg) { call_python('glide.log', 'info', String(msg)); },
    info: function (msg) { call_python('glide.log', 'info', String(msg)); },
    debug: function (msg) { call_python('glide.log', 'debug', String(msg)); },
    warn: function (msg) { call_python('glide.log', 'warn', String(msg)); },
    error: function (msg) { call_python('glide.log', 'error', String(msg)); }
};

function GlideDateTime() { this._ms = call_python('glide.now_ms'); }
GlideDateTime.prototype.getNumericValue = function () { return this._ms; };
GlideDateTime.prototype.getValue = function () { return call_python('glide.format_ms', this._ms); };
GlideDateTime.prototype.toString = GlideDateTime.prototype.getValue;

var GlideStringUtil = {
    base64Encode: function (s) { return call_python('glide.b64encode', String(s)); },
    base64Decode: function (s) { return call_python('glide.b64decode', String(s)); }
};

function GlideCertificateEncryption() {}
GlideCertificateEncryption.prototype.generateMac = function (key, algorithm, data) {
    return call_python('glide.mac', String(key), String(algorithm), String(data));
};

function RESTResponseV2(answer) { this._answer = answer; }
RESTResponseV2.prototype.getStatusCode = function () { return this._answer.status; };
RESTResponseV2.prototype.getBody = function () { return this._answer.body; };
RESTResponseV2.prototype.haveError = function () { return this._answer.error !== null; };
RESTResponseV2.prototype.getErrorMessage = function () { return this._answer.error; };
RESTResponseV2.prototype.getHeader = function (name) {
    return this._answer.headers[String(name).toLowerCase()] || null;
};
RESTResponseV2.prototype.waitForResponse = function () {};

var sn_ws = {
    RESTMessageV2: function () {
        this._request = { endpoint: '', method: 'get', headers: {}, body: '', timeout: 60000 };
    }
};
sn_ws.RESTMessageV2.prototype.setEndpoint = function (url) { this._request.endpoint = String(url); };
sn_ws.RESTMessageV2.prototype.setHttpMethod = function (m) { this._request.method = String(m); };
sn_ws.RESTMessageV2.prototype.setRequestHeader = function (name, value) {
    this._request.headers[String(name)] = String(value);
};
sn_ws.RESTMessageV2.prototype.setRequestBody = function (body) { this._request.body = String(body); };
sn_ws.RESTMessageV2.prototype.setHttpTimeout = function (ms) { this._request.timeout = Number(ms); };
sn_ws.RESTMessageV2.prototype.execute = function () {
    return new RESTResponseV2(call_python('glide.rest', this._request));
};
sn_ws.RESTMessageV2.prototype.executeAsync = function () {
    return new RESTResponseV2(call_python('glide.rest_async', this._request));
};

var action = { setRedirectURL: function () {}, setReturnURL: function () {} };

var current = new GlideRecordShim(dukpy.table, dukpy.record, dukpy.previous, dukpy.booleans);
var previous = dukpy.previous === null ? null
    : new GlideRecordShim(dukpy.table, dukpy.previous, null, dukpy.booleans);
