// Shapes of the REST and SSE contract (docs/architecture.md "Status object", "REST contract", "Events").

export type OAuthStatus = 'none' | 'authenticated' | 'expired' | 'error'
export type RefreshState = 'idle' | 'scheduled' | 'refreshing' | 'retrying' | 'failed'

export interface ErrorInfo {
  kind: string
  message: string
}

export interface ServerStatus {
  name: string
  url: string | null
  protocol: string
  enabled: boolean
  is_oauth: boolean
  oauth_status: OAuthStatus
  token_held: boolean
  refresh_state: RefreshState
  token_expires_at: string | null
  token_expiry: "expires_in" | "jwt_exp" | "unknown" | null
  next_refresh_at: string | null
  last_refresh_at: string | null
  refresh_count: number
  retry_count: number
  retrying_since: string | null
  last_error: ErrorInfo | null
  action: 'login' | null
  user_logged_out: boolean
  connected: boolean | null
  last_probe_at: string | null
  oauth_settings?: OAuthSettings | null
  // The gateway's part (docs/architecture.md "Status object"): the server's tools in the aggregated /mcp …
  tools?: number | null
  in_aggregate?: boolean
  aggregate_note?: string | null
  // … and a stdio server's supervised process.
  process?: string
  pid?: number | null
  restarts?: number
}

// A server's `oauth` config as applied (docs/configuration.md); never the secret itself.
export interface OAuthSettings {
  client_id: string | null
  client_secret_set: boolean
  resource: string
  redirect_uri: string | null
  assume_pkce_s256: boolean
}

export interface ServerStats {
  total: number
  by_status: Record<OAuthStatus, number>
}

export interface ServersData {
  servers: ServerStatus[]
  stats: ServerStats
}

/** `GET /api/v1/status`: the parts the page shows. */
export interface StatusData {
  version: string
  listen: string
  config_file: string | null
  config_problems: string[]
  config_warnings: string[]
  config_differs: boolean
}

export interface ConfigReport {
  file: string | null
  problems: string[]
  warnings: string[]
  /** True while the file holds an edit the service refused: it runs the previous configuration. */
  differs: boolean
}

export interface LoginData {
  server: string
  auth_url: string
  browser_opened: boolean
}

export interface LogoutData {
  server: string
  action: 'logout'
  revoked: boolean
}

/** One server's part of `POST /api/v1/servers/logout`: `error` is the backend's sentence when it failed. */
export interface LogoutAllResult {
  server: string
  action: 'logout'
  success: boolean
  revoked?: boolean
  error?: string
}

export interface LogoutAllData {
  results: LogoutAllResult[]
  count: number
  failed: number
}

export interface RefreshData {
  server: string
  token_expires_at: string | null
}

export type Envelope<T> = { success: true; data: T } | { success: false; error: string }

export const EVENT_NAMES = [
  'servers.changed',
  'oauth.login_completed',
  'oauth.token_refreshed',
  'oauth.refresh_failed',
  'oauth.logout',
] as const

export type EventName = (typeof EVENT_NAMES)[number]

/** The `data:` line of every SSE frame. */
export interface EventFrame {
  payload: Record<string, unknown>
  timestamp: number
}

/** One row of the events panel. */
export interface EventRecord {
  key: string
  id: string
  name: EventName
  server: string
  /** Unix milliseconds. */
  at: number
  detail: string
}
