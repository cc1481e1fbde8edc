// uPlot as a React component: the chart is made once per `options` and given new data in place; it takes the
// width of its box (a ResizeObserver). The data it holds is mirrored on the box as data-series (per series: its
// label, the number of values drawn and their sum), what the browser tests compare with the API.
import { useEffect, useRef } from 'react';
import uPlot, { type AlignedData, type Options } from 'uplot';
import 'uplot/dist/uPlot.min.css';

export type ChartOptions = Omit<Options, 'width' | 'height'>;

function describe(chart: uPlot): string {
  return JSON.stringify(chart.series.slice(1).map((series, i) => {
    let drawn = 0;
    let sum = 0;
    for (const value of chart.data[i + 1] ?? []) {
      if (typeof value !== 'number') continue;
      drawn++;
      sum += value;
    }
    return { label: series.label, drawn, sum };
  }));
}

export function UPlotChart({ options, data, height, testId }: { options: ChartOptions; data: AlignedData; height: number; testId: string }) {
  const host = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const latest = useRef(data);
  latest.current = data;

  useEffect(() => {
    const box = host.current!;
    const made = new uPlot({ ...options, width: Math.max(200, box.clientWidth), height }, latest.current, box);
    chart.current = made;
    box.dataset.series = describe(made);
    const resize = new ResizeObserver(() => made.setSize({ width: Math.max(200, box.clientWidth), height }));
    resize.observe(box);
    return () => {
      resize.disconnect();
      made.destroy();
      chart.current = null;
    };
  }, [options, height]);

  useEffect(() => {
    const made = chart.current;
    if (!made || made.data === data) return;
    made.setData(data);
    host.current!.dataset.series = describe(made);
  }, [data]);

  return <div ref={host} className="chart" data-testid={testId} />;
}
