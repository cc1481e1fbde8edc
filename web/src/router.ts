// A few lines of client-side routing: the server answers every non-API path with index.html.
import { useEffect, useState, type MouseEvent } from 'react';

export type Route = { page: 'list' } | { page: 'create' } | { page: 'detail'; id: string } | { page: 'missing'; path: string };

export function parseRoute(pathname: string): Route {
  if (pathname === '/' || pathname === '') return { page: 'list' };
  if (pathname === '/new') return { page: 'create' };
  const detail = /^\/functions\/([^/]+)\/?$/.exec(pathname);
  if (detail?.[1]) return { page: 'detail', id: decodeURIComponent(detail[1]) };
  return { page: 'missing', path: pathname };
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (options.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  window.dispatchEvent(new PopStateEvent('popstate'));
  if (!to.includes('#')) window.scrollTo(0, 0);
}

export function useLocation(): { pathname: string; hash: string } {
  const read = () => ({ pathname: location.pathname, hash: location.hash });
  const [current, setCurrent] = useState(read);
  useEffect(() => {
    const update = () => setCurrent(read());
    window.addEventListener('popstate', update);
    return () => window.removeEventListener('popstate', update);
  }, []);
  return current;
}

/** Props for an <a> that navigates in the page (plain clicks) and still opens in a new tab (modified clicks). */
export function linkTo(to: string): { href: string; onClick: (event: MouseEvent<HTMLAnchorElement>) => void } {
  return {
    href: to,
    onClick: (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      navigate(to);
    },
  };
}
