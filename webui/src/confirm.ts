// One confirmation dialog for the page: a component asks, ConfirmDialog.vue answers.
import { reactive } from 'vue'

export interface ConfirmRequest {
  title: string
  message: string
  confirmLabel: string
}

interface ConfirmState {
  request: ConfirmRequest | null
  resolve: ((confirmed: boolean) => void) | null
}

export const confirmState = reactive<ConfirmState>({ request: null, resolve: null })

/** Resolves true when the person confirms, false on Cancel, Escape or a second request. */
export function askConfirm(request: ConfirmRequest): Promise<boolean> {
  confirmState.resolve?.(false)
  return new Promise((resolve) => {
    confirmState.request = request
    confirmState.resolve = resolve
  })
}

export function answerConfirm(confirmed: boolean): void {
  const resolve = confirmState.resolve
  confirmState.request = null
  confirmState.resolve = null
  resolve?.(confirmed)
}
