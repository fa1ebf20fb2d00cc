/*
 * Deskgate's UI actions (form buttons on the desk's table), as `deskgate setup <desk>` installs
 * them: "Request identity verification" sets the flag field to the desk's first trigger value;
 * "Deskgate: reset MFA" and the other action requests set the action field to their action.
 * Server-side: it sets the field and saves as the agent who pressed it, so the business rule
 * pushes exactly as for an agent's own edit (and sys_audit records who asked).
 * Setup substitutes the two quoted placeholders with the field and the value.
 */
current.setValue(DESKGATE_FIELD, DESKGATE_VALUE);
current.update();
action.setRedirectURL(current);
