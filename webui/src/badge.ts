// The words a server's auth state is shown in: the badge, the events panel and the CLI's table say the same.
import type { ServerStatus } from './types'

export type Tone = 'ok' | 'warn' | 'bad' | 'muted' | 'neutral'

export function badgeOf(server: Pick<ServerStatus, 'is_oauth' | 'enabled' | 'oauth_status' | 'user_logged_out'>): {
  label: string
  tone: Tone
} {
  if (!server.is_oauth) return { label: 'No OAuth', tone: 'neutral' }
  if (!server.enabled) return { label: 'Disabled', tone: 'neutral' }
  switch (server.oauth_status) {
    case 'authenticated':
      return { label: 'Authenticated', tone: 'ok' }
    case 'expired':
      return { label: 'Token Expired', tone: 'warn' }
    case 'error':
      return { label: 'Auth Error', tone: 'bad' }
    default:
      return server.user_logged_out ? { label: 'Logged out', tone: 'muted' } : { label: 'Not logged in', tone: 'muted' }
  }
}

/** Why a server's status changed (`servers.changed` `reason`), in the UI's words; '' when it says nothing new. */
const REASONS: Record<string, string> = {
  start: 'service started',
  config_added: 'added to the configuration',
  config_changed: 'configuration changed',
  timer: '',
  wake: 'checked after the computer slept',
  probe: 'upstream checked',
  token_refreshed: 'token refreshed',
  refresh_requested: 'refreshing on request',
  refresh_on_use: 'refreshing before use',
  refresh_retrying: 'refresh failing, retrying',
  refresh_failed: 'refresh failed',
  refresh_stale: '',
  login_completed: 'logged in',
  login_failed: 'login failed',
  logout: 'logged out',
  upstream_401: 'the server refused the token; refreshing',
  upstream_refused: 'the server refused a fresh token',
  insufficient_scope: 'the server asks for more permissions',
}

export function reasonWords(reason: string): string {
  return REASONS[reason] ?? reason.replace(/_/g, ' ')
}
