import { LOCAL_PORTAL } from './locations.js';

/** A portal path as the operator would type it: `/abs/path` for local paths, `portal:path` otherwise. */
export function showEndpoint(endpoint: { portal: string; path: string }): string {
  if (endpoint.portal === LOCAL_PORTAL) return `/${endpoint.path}`;
  return `${endpoint.portal}:${endpoint.path === '' ? '/' : endpoint.path}`;
}
