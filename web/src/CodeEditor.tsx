// CodeMirror 6 as a React component: JavaScript, Python or JSON highlighting (or plain text), bundled (no CDN);
// editable, or read-only to show a package's files.
import { javascript } from '@codemirror/lang-javascript';
import { json } from '@codemirror/lang-json';
import { python } from '@codemirror/lang-python';
import { Compartment, EditorState } from '@codemirror/state';
import { EditorView } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import { useEffect, useRef } from 'react';

export type Language = 'javascript' | 'python' | 'json' | 'text';

const languages = { javascript, python, json, text: () => [] } as const;

const theme = EditorView.theme({
  '&': { fontSize: '13px', border: '1px solid var(--border)', borderRadius: '6px', background: 'var(--code-bg)' },
  '&.cm-focused': { outline: '2px solid var(--focus)', outlineOffset: '-1px' },
  '.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '1.5' },
  '.cm-gutters': { background: 'var(--code-gutter)', borderRight: '1px solid var(--border)', borderRadius: '6px 0 0 6px' },
});

export function CodeEditor(props: {
  value: string;
  onChange: (value: string) => void;
  language: Language;
  label: string;
  height: string;
  testId?: string;
  /** Fixed when the editor is created. */
  readOnly?: boolean;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const language = useRef(new Compartment());
  const onChange = useRef(props.onChange);
  onChange.current = props.onChange;

  useEffect(() => {
    const editor = new EditorView({
      parent: host.current!,
      state: EditorState.create({
        doc: props.value,
        extensions: [
          basicSetup,
          theme,
          language.current.of(languages[props.language]()),
          EditorView.lineWrapping,
          props.readOnly ? [EditorState.readOnly.of(true), EditorView.editable.of(false)] : [],
          EditorView.contentAttributes.of({ 'aria-label': props.label }),
          EditorView.theme({ '&': { height: props.height }, '.cm-scroller': { overflow: 'auto' } }),
          EditorView.updateListener.of((update) => {
            if (update.docChanged) onChange.current(update.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = editor;
    return () => {
      editor.destroy();
      view.current = null;
    };
    // The editor is created once; value and language changes are applied below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  // An outside change (a starter template, a reset after a save) replaces the document.
  useEffect(() => {
    const editor = view.current;
    if (editor && editor.state.doc.toString() !== props.value) {
      editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: props.value } });
    }
  }, [props.value]);

  useEffect(() => {
    view.current?.dispatch({ effects: language.current.reconfigure(languages[props.language]()) });
  }, [props.language]);

  return <div ref={host} className="code-editor" data-testid={props.testId} data-language={props.language} data-readonly={props.readOnly ? 'true' : undefined} />;
}
