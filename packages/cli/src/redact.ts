/**
 * Credential scrubbing for everything the CLI prints. Store and SFTP URLs may carry a
 * password (`postgres://user:secret@host/db`); it must never reach a terminal, a log
 * collector or a CI transcript, so every line the CLI writes goes through {@link redact}.
 */

// scheme://user:password@ — the password part is anything up to the last `@` of the authority.
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*):[^\s/?#]*@/gi;
// key=value credentials in query strings or libpq-style connection strings.
const KEY_PASSWORD = /\b(password|passwd|pwd|passphrase)=([^\s&;]*)/gi;

/** Replace any password in URLs or `password=` pairs inside `text` with `***`. */
export function redact(text: string): string {
  return text.replace(URL_PASSWORD, '$1:***@').replace(KEY_PASSWORD, '$1=***');
}
