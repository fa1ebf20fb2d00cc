/*
 * Deskgate's UI action "Request identity verification" (a form button on the desk's table), as
 * `deskgate setup <desk>` installs it. Server-side: it sets the flag field to the desk's first
 * trigger value and saves, so the business rule pushes exactly as for an agent's own edit.
 * Setup substitutes the two quoted placeholders with the desk's flag field and value.
 */
current.setValue(DESKGATE_FLAG_FIELD, DESKGATE_FLAG_VALUE);
current.update();
action.setRedirectURL(current);
