/**
 * Which route worked for an extra delivery to a destination: a second concurrent connection, or
 * the configured relay because the destination refused a second one. The store implements this
 * persistently; the in-memory one serves tests and single-process use.
 */

export type ExtraRoute = 'second-connection' | 'relay';

export interface RouteMemory {
  get(destination: string): ExtraRoute | undefined;
  set(destination: string, route: ExtraRoute): void;
}

export class InMemoryRouteMemory implements RouteMemory {
  private readonly routes = new Map<string, ExtraRoute>();

  get(destination: string): ExtraRoute | undefined {
    return this.routes.get(destination);
  }

  set(destination: string, route: ExtraRoute): void {
    this.routes.set(destination, route);
  }
}

/** The store's route records (src/store) seen as a RouteMemory, without a dependency on the store. */
export function routeMemoryOf(store: {
  route(destination: string): { route: ExtraRoute } | undefined;
  setRoute(destination: string, route: ExtraRoute): void;
}): RouteMemory {
  return {
    get: (destination) => store.route(destination)?.route,
    set: (destination, route) => store.setRoute(destination, route),
  };
}
