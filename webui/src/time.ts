// Time display helpers. Expiry reads like the CLI: "in 4m 10s", "EXPIRED".
import { onBeforeUnmount, onMounted, ref, type Ref } from 'vue'

export const WARNING_MS = 5 * 60 * 1000

export function parseIso(iso: string | null): number | null {
  if (!iso) return null
  const ms = Date.parse(iso)
  return Number.isNaN(ms) ? null : ms
}

/** "4m 10s", "2h 5m", "3d 4h" for a non-negative span. */
export function formatSpan(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000))
  const days = Math.floor(total / 86400)
  const hours = Math.floor((total % 86400) / 3600)
  const minutes = Math.floor((total % 3600) / 60)
  const seconds = total % 60
  if (days > 0) return `${days}d ${hours}h`
  if (hours > 0) return `${hours}h ${minutes}m`
  if (minutes > 0) return `${minutes}m ${seconds}s`
  return `${seconds}s`
}

/** "in 4m 10s" for the future, "3m 2s ago" for the past. */
export function formatRelative(targetMs: number, nowMs: number): string {
  const delta = targetMs - nowMs
  return delta >= 0 ? `in ${formatSpan(delta)}` : `${formatSpan(-delta)} ago`
}

const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
})
const minuteFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' })
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })

/** Local wall-clock time to the minute, "14:03". */
export function formatMinute(ms: number): string {
  return minuteFormat.format(ms)
}

/** Local wall-clock time, "14:03:27". */
export function formatClock(ms: number): string {
  return clockFormat.format(ms)
}

/** Local date and time, for tooltips. */
export function formatFull(ms: number): string {
  return fullFormat.format(ms)
}

const now = ref(Date.now())
let users = 0
let timer: number | undefined

/** One shared one-second clock for every countdown on the page. */
export function useNow(): Ref<number> {
  onMounted(() => {
    users += 1
    if (timer === undefined) {
      now.value = Date.now()
      timer = window.setInterval(() => {
        now.value = Date.now()
      }, 1000)
    }
  })
  onBeforeUnmount(() => {
    users -= 1
    if (users === 0 && timer !== undefined) {
      window.clearInterval(timer)
      timer = undefined
    }
  })
  return now
}
