/*
 * Deskgate push for ServiceNow: the script of the Business Rule "Deskgate identity verification
 * push" that `deskgate setup <desk>` installs (update set or Table API). Do not edit the copy on
 * the instance: `deskgate doctor` warns when it differs from this file.
 *
 *   Table:     the desk's table (incident, sc_req_item, ...)
 *   When:      after    Insert: yes   Update: yes   Advanced: yes
 *   Condition: written by setup from the desk's flag field and trigger values, and its action
 *              field (an identity-provider action asked for after a verified result), e.g.
 *              current.active == true && ((current.u_idv_request.changes() &&
 *              ["mfa_reset", "account_unlock"].indexOf(current.getValue('u_idv_request')) >= 0) ||
 *              (current.u_idv_action.changes() && ["unlock", "reset_mfa", "reset_password",
 *              "revoke_sessions"].indexOf(current.getValue('u_idv_action')) >= 0))
 *              For a boolean flag getValue gives "1"/"0", not "true": ["1"].indexOf(...).
 *              Either way the push is the same: Deskgate reads the record and sees what it asks.
 *
 * System properties it reads, named after the record's table, so each desk (one table each) on
 * an instance pushes to its own endpoint with its own secret (setup creates both):
 *   deskgate.<table>.webhook_url     <public_url>/webhooks/servicenow/<desk>
 *   deskgate.<table>.webhook_secret  type password2; DESKGATE_DESKS__<DESK>__WEBHOOK_SECRET
 * Deskgate checks a push to a desk's endpoint with that desk's secret only.
 *
 * Signature (what Deskgate checks, connectors/servicenow/push.py):
 *   X-Deskgate-Timestamp: unix seconds
 *   X-Deskgate-Signature: "v1=" + base64(HMAC-SHA256(secret, timestamp + "." + body))
 * Deskgate refuses a timestamp more than 5 minutes off its clock, so the instance's clock matters.
 * The rule signs when it runs and executeAsync() sends when the instance's queue gets to it
 * (normally seconds): that delay must stay inside the window; a later push is refused and the
 * poller finds the record. Not an async rule: those get no `previous`, so no changes().
 *
 * The push carries ids only; Deskgate reads the record (and its caller) through the Table API.
 * If the push is lost, Deskgate's poller finds the record anyway (poll_interval_seconds).
 * ES5 only, as classic server-side scripts are: the sandbox runs this very file in an ES5 engine
 * with shims of the Glide APIs it calls, and Deskgate's check accepts what it sends.
 */
(function executeRule(current, previous /* null when async */) {
    var table = current.getTableName();
    var url = gs.getProperty('deskgate.' + table + '.webhook_url');
    var secret = gs.getProperty('deskgate.' + table + '.webhook_secret');
    if (!url || !secret) {
        gs.error('Deskgate: deskgate.' + table + '.webhook_url or deskgate.' + table +
                 '.webhook_secret is not set');
        return;
    }
    var body = JSON.stringify({
        table: table,
        sys_id: current.getUniqueValue(),
        number: current.getValue('number'),
        event: 'flagged',
        // One id per firing, inside the signature: Deskgate takes each delivery once by it, so
        // a replay is refused and two firings within one second are still two deliveries.
        delivery: gs.generateGUID()
    });
    var timestamp = String(Math.floor(new GlideDateTime().getNumericValue() / 1000));
    // generateMac takes the key base64-encoded and returns the MAC base64-encoded.
    var mac = new GlideCertificateEncryption().generateMac(
        GlideStringUtil.base64Encode(secret), 'HmacSHA256', timestamp + '.' + body);

    var request = new sn_ws.RESTMessageV2();
    request.setEndpoint(url);
    request.setHttpMethod('post');
    request.setRequestHeader('Content-Type', 'application/json');
    request.setRequestHeader('X-Deskgate-Timestamp', timestamp);
    request.setRequestHeader('X-Deskgate-Signature', 'v1=' + mac);
    request.setRequestBody(body);
    request.executeAsync(); // never hold the agent's save on Deskgate
})(current, previous);
